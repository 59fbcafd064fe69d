"""``pathways serve``: the HTTP service on Ray Serve over the live snapshot."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve home pages over HTTP (Ray Serve) from the live snapshot")
    p.add_argument("--config", type=Path, help="TOML or JSON config file (default: embedded defaults)")
    p.add_argument("--data-dir", type=Path, help="where snapshots, the feature repo and raw/api live (default: var)")
    p.add_argument("--port", type=int, help="HTTP port (default: serving.port)")
    p.add_argument("--memory-playback", action="store_true",
                   help="keep real-time playback state in memory instead of the Feast online store")
    p.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    p.add_argument("--dev-token", action="store_true",
                   help="create a development signing key if none is set (<data_dir>/secrets/jwt_secret, mode 0600) "
                        "and print a service token for the subject 'pathways-dev'")
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from pathways.config import load_config
    from serving.deployment import run

    overrides: dict[str, object] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = str(args.data_dir)
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise ValueError(f"--port must be in 1..65535, got {args.port}")
        overrides["serving.port"] = args.port
    config = load_config(args.config, **overrides)
    if args.dev_token:
        from serving.access import dev_token, with_service

        config = with_service(config, "pathways-dev")
        token = dev_token(config, "pathways-dev", ["pages:read", "events:write"])
        print(f"development service token (valid {config.auth.token_ttl_s // 60} min):\n  export TOKEN='{token}'\n"
              f"  curl -H \"Authorization: Bearer $TOKEN\" 'http://{config.serving.host}:{config.serving.port}"
              "/api/v1/pathways?profile_id=1&row_count=5'")
    base = f"http://{config.serving.host}:{config.serving.port}"
    print(f"Pathways: serving {config.snapshots_dir} on {base} (Ctrl-C to stop)")
    run(config, blocking=True, playback="memory" if args.memory_playback else "online", access_log=args.access_log)
    return 0
