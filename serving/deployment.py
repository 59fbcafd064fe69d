"""Ray Serve: a thin deployment around ``create_app(build_service(config))``.

``build_app(config)`` returns the bound application; ``run(config)`` starts Ray (private temp
dir, no dashboard), Serve's HTTP proxy on ``config.serving.host:port`` and the app. The replica
builds the service in its constructor and hands Serve the FastAPI app through
``__serve_build_asgi_app__``; nothing here knows about pages. ``max_ongoing_requests`` must stay
well above Serve's default of 5: with a CPU-bound handler the proxy's queue probes time out and
throughput collapses (STACK.md).

Settings that may change without a restart go through ``reconfigure`` (Serve ``user_config``):
``{"personalize_budget_ms": 80}``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from ray import serve

from pathways.config import PathwaysConfig

log = logging.getLogger(__name__)

PlaybackBackend = Literal["online", "memory"]
RECONFIGURABLE = frozenset({"personalize_budget_ms", "default_row_count"})


@serve.deployment(max_ongoing_requests=64)
@serve.ingress()
class PathwaysDeployment:
    """One replica: the service over the snapshot and the online store, behind FastAPI."""

    def __init__(self, config: dict[str, Any], playback: PlaybackBackend = "online") -> None:
        from serving.logic import build_service
        from serving.playback import InMemoryPlaybackStore

        cfg = PathwaysConfig.model_validate(config)
        from serving.artwork import load_artwork_policy

        store = InMemoryPlaybackStore() if playback == "memory" else None
        self.service = build_service(cfg, playback=store, artwork=load_artwork_policy(cfg))

    def __serve_build_asgi_app__(self) -> Any:
        from serving.api import create_app

        return create_app(self.service)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        unknown = set(user_config) - RECONFIGURABLE
        if unknown:
            raise ValueError(f"user_config: cannot change {sorted(unknown)} at run time; allowed: {sorted(RECONFIGURABLE)}")
        pages = self.service.pages
        pages.config = pages.config.with_overrides({f"serving.{k}": v for k, v in user_config.items()})


def build_app(config: PathwaysConfig, playback: PlaybackBackend = "online") -> serve.Application:
    """The bound Serve application for ``config`` (``data_dir`` made absolute for the replica)."""
    config = config.with_overrides({"data_dir": str(Path(config.data_dir).resolve())})
    deployment = PathwaysDeployment.options(  # type: ignore[attr-defined]  # a serve.Deployment at run time
        max_ongoing_requests=config.serving.max_ongoing_requests
    )
    return deployment.bind(config.model_dump(mode="json"), playback)


def start(config: PathwaysConfig, port: int | None = None, temp_dir: Path | str | None = None,
          playback: PlaybackBackend = "online", timeout_s: float = 120.0, access_log: bool = False) -> str:
    """Start Ray, Serve and the app; returns the base URL once ``/healthz`` answers.

    ``access_log=False`` (the default) drops Serve's per-request log lines, as uvicorn's
    ``access_log=False`` does: they cost throughput and flood the driver's console."""
    import httpx
    import ray

    port = int(port or config.serving.port)
    temp_dir = str(temp_dir or tempfile.mkdtemp(prefix="pathways-ray-"))
    ray.init(_temp_dir=temp_dir, include_dashboard=False, ignore_reinit_error=True, configure_logging=False)
    logging_config = {"enable_access_log": access_log, "log_level": "INFO" if access_log else "WARNING"}
    serve.start(http_options={"host": config.serving.host, "port": port}, logging_config=logging_config)
    serve.run(build_app(config, playback), name="pathways", route_prefix="/", logging_config=logging_config)
    base = f"http://{config.serving.host}:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=5.0).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Pathways did not answer on {base} within {timeout_s:.0f} s")
        time.sleep(0.2)


def stop() -> None:
    """Shut Serve and Ray down (what ``start`` started)."""
    import ray

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def run(config: PathwaysConfig, blocking: bool = True, port: int | None = None,
        playback: PlaybackBackend = "online", access_log: bool = False) -> str:
    """``start`` and, if ``blocking``, serve until interrupted (Ctrl-C), then ``stop``."""
    base = start(config, port=port, playback=playback, access_log=access_log)
    log.info("Pathways serving on %s", base)
    if not blocking:
        return base
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return base
