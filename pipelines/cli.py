"""``pathways nightly`` (the batch job) and ``pathways demo`` (what ``make run`` runs)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pathways.config import PathwaysConfig, load_config, parse_override


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML or JSON config file (default: embedded defaults)")
    p.add_argument("--data-dir", type=Path, help="where inputs, lake, models and snapshots live (default: var)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set world.n_accounts=100 (repeatable)")


def config_from_args(args: argparse.Namespace) -> PathwaysConfig:
    overrides = dict(parse_override(o) for o in args.overrides)
    if args.data_dir is not None:
        overrides["data_dir"] = str(args.data_dir)
    return load_config(args.config, **overrides)


def register(sub: argparse._SubParsersAction) -> None:
    from pipelines.nightly import STAGES

    p = sub.add_parser("nightly", help="run (or resume) the nightly job and publish a snapshot")
    add_config_args(p)
    p.add_argument("--no-resume", action="store_true", help="redo every stage of this run")
    p.add_argument("--until", choices=[s.name for s in STAGES], help="stop after this stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--address", help="build the pages on this Ray cluster (ray://HOST:10001, or auto): "
                                     "sets pipeline.executor=ray and pipeline.ray_address")
    p.set_defaults(handler=_nightly)

    s = sub.add_parser("snapshots", help="published snapshots: list them, roll serving back")
    snap_sub = s.add_subparsers(dest="snapshots_command", metavar="ACTION")
    snap_sub.required = True
    ls = snap_sub.add_parser("list", help="every published snapshot with its counts, models and code version")
    add_config_args(ls)
    ls.add_argument("--json", action="store_true", help="print the manifests' summaries as JSON")
    ls.set_defaults(handler=_snapshots_list)
    rb = snap_sub.add_parser("rollback", help="switch serving back to VERSION (default: the previous snapshot)")
    add_config_args(rb)
    rb.add_argument("version", nargs="?", help="a published version (see `pathways snapshots list`)")
    rb.set_defaults(handler=_snapshots_rollback)

    d = sub.add_parser("demo", help="generate the default world, run the nightly job, serve it")
    add_config_args(d)
    d.add_argument("--size", default="default", choices=["tiny", "small", "default"], help="world size preset")
    d.add_argument("--no-serve", action="store_true", help="stop after publishing")
    d.add_argument("--port", type=int, help="HTTP port (default: serving.port, 8000)")
    d.set_defaults(handler=_demo)


def _nightly(args: argparse.Namespace) -> int:
    from pipelines.nightly import NightlyLocked, format_summary, run_nightly
    from pipelines.runner import StageFailed

    config = config_from_args(args)
    if args.address:
        config = config.with_overrides({"pipeline.executor": "ray", "pipeline.ray_address": args.address})
    try:
        ctx, results = run_nightly(config, resume=not args.no_resume, until=args.until,
                                   progress=not args.no_progress)
    except StageFailed as exc:
        print(f"pathways nightly: {exc}\nthe live snapshot is unchanged; re-run to resume from that stage",
              file=sys.stderr)
        return 1
    except NightlyLocked as exc:
        print(f"pathways nightly: {exc}", file=sys.stderr)
        return 3
    print(format_summary(ctx, results))
    return 0


def _snapshots_list(args: argparse.Namespace) -> int:
    import json

    from pipelines.publish import list_snapshots

    rows = list_snapshots(config_from_args(args))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'':2}{'version':<26}{'profiles':>10}{'empty':>7}  {'store':<7}{'code':<10}{'run':<14}data window")
    for r in rows:
        counts, window = r.get("counts", {}), r.get("data_window") or {}
        sha = (r.get("code", {}).get("git_sha") or "")[:8]
        print(f"{'*' if r['live'] else '':2}{r['version']:<26}{counts.get('profiles', '?'):>10}"
              f"{counts.get('empty_pages', '?'):>7}  {r.get('page_store', '?'):<7}{sha:<10}{r.get('run_id') or '':<14}"
              f"{window.get('start') or '?'} .. {window.get('end') or '?'}")
    return 0


def _snapshots_rollback(args: argparse.Namespace) -> int:
    from pathways.snapshot import SnapshotError
    from pipelines.publish import rollback

    try:
        version = rollback(config_from_args(args), args.version)
    except SnapshotError as exc:
        print(f"pathways snapshots rollback: {exc}", file=sys.stderr)
        return 1
    print(f"serving now points at {version}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pipelines.nightly import format_summary, run_nightly
    from world.generator import generate_to_dir
    from world.sizes import preset

    config = config_from_args(args)
    if args.port is not None:
        config = config.with_overrides({"serving.port": args.port})
    world_dir = config.raw_dir / "world"
    if not (world_dir / "events.parquet").is_file():
        t0 = time.perf_counter()
        print(f"generating the {args.size} synthetic world into {world_dir} ...")
        generate_to_dir(preset(args.size, base=config.world), world_dir)
        print(f"  done in {time.perf_counter() - t0:.1f} s")
    ctx, results = run_nightly(config)
    print(format_summary(ctx, results))
    if args.no_serve:
        return 0
    import pyarrow.parquet as pq

    from serving import deployment
    from serving.access import auth_config, dev_token, with_service

    config = with_service(config, "pathways-demo")  # the demo's service token: any profile
    examples = _example_profiles(config)
    accounts = dict(zip(*pq.read_table(config.raw_dir / "world" / "profiles.parquet",
                                       columns=["profile_id", "account_id"]).to_pydict().values()))
    account = int(accounts[examples[0][0]])
    member = dev_token(config, f"account:{account}", ["pages:read", "events:write"], account_id=account)
    service = dev_token(config, "pathways-demo", ["pages:read", "events:write"])
    base = deployment.start(config)
    print(f"\nServing on {base}. Development signing key: {auth_config(config).secret_file} (mode 0600);"
          f" tokens valid {config.auth.token_ttl_s // 60} min. Try:")
    print(f"  export MEMBER='{member}'   # account {account}: its own profiles only")
    print(f"  export SERVICE='{service}'   # a service token (auth.service_subjects): any profile")
    for pid, what in examples:
        token = "MEMBER" if int(accounts[pid]) == account else "SERVICE"
        print(f"  curl -H \"Authorization: Bearer ${token}\" '{base}/api/v1/pathways?profile_id={pid}&row_count=5'   # {what}")
    print(f"  curl -H \"Authorization: Bearer $SERVICE\" '{base}/api/v1/pathways?profile_id=999999999&row_count=5'"
          "   # never seen: fallback page")
    print(f"  curl -X PUT -H \"Authorization: Bearer $MEMBER\" '{base}/api/v1/playback/s1/heartbeat' "
          f"-H 'content-type: application/json' "
          f"-d '{{\"profile_id\": {examples[0][0]}, \"title_id\": {_example_title(config, examples[0][0])}, "
          f"\"position_s\": 600}}'   # then the first call again: continue watching leads")
    print(f"  curl '{base}/api/v1/pathways?profile_id={examples[0][0]}'   # no token: 401")
    print(f"  curl '{base}/healthz'; curl '{base}/metrics'\nPress Ctrl-C to stop.")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping ...")
    finally:
        deployment.stop()
    return 0


def _example_profiles(config: PathwaysConfig) -> list[tuple[int, str]]:
    import pyarrow.parquet as pq

    profiles = pq.read_table(config.raw_dir / "world" / "profiles.parquet").to_pylist()
    adult = next(p for p in profiles if not p["is_kids"])
    kid = next((p for p in profiles if p["is_kids"]), adult)
    return [(adult["profile_id"], f"adult profile in {adult['region']}"), (kid["profile_id"], "kids profile")]


def _example_title(config: PathwaysConfig, profile_id: int) -> int:
    """A title that ``profile_id`` may see (licensed in its region, within its maturity)."""
    import pyarrow.parquet as pq

    world = config.raw_dir / "world"
    prof = next(p for p in pq.read_table(world / "profiles.parquet").to_pylist() if p["profile_id"] == profile_id)
    titles = pq.read_table(world / "titles.parquet").to_pylist()
    return next(t["title_id"] for t in titles
                if prof["region"] in t["regions"] and t["maturity_level"] <= prof["max_maturity_level"])
