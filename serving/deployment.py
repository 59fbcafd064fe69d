"""Ray Serve: a thin deployment around ``create_app(build_service(config))``.

``build_app(config)`` returns the bound application; ``run(config)`` starts Ray (private temp
dir, no dashboard), Serve's HTTP proxy on ``config.serving.host:port`` and the app. The replica
builds the service in its constructor and hands Serve the FastAPI app through
``__serve_build_asgi_app__``; nothing here knows about pages. ``max_ongoing_requests`` must stay
well above Serve's default of 5: with a CPU-bound handler the proxy's queue probes time out and
throughput collapses (STACK.md).

Settings that may change without a restart go through ``reconfigure`` (Serve ``user_config``):
``{"personalize_budget_ms": 80}``.

Replicas and overload come from ``ServingConfig``: ``num_replicas`` (None: ``default_replicas``,
2 where the machine has the cores and the event stream takes several writers, else 1), Serve's
``max_queued_requests`` (past it Serve itself refuses) and the proxy's ``request_timeout_s``; the
app's own soft and hard in-flight limits are in ``serving.api``. Replicas share a
``PROMETHEUS_MULTIPROC_DIR`` so one scrape of ``/metrics`` covers them all.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from ray import serve

from pathways.config import PathwaysConfig

log = logging.getLogger(__name__)

PlaybackBackend = Literal["online", "memory"]
_ENV_SET: set[str] = set()  # environment variables start() added (stop() removes them)
RECONFIGURABLE = frozenset({"personalize_budget_ms", "default_row_count", "deadline_ms"})


def default_replicas(config: PathwaysConfig, cpus: int | None = None) -> int:
    """``serving.num_replicas``, or 2 when the machine has >= 2 cores and the event stream accepts
    several writers (the embedded segment log takes one appending process: then 1)."""
    if config.serving.num_replicas is not None:
        return config.serving.num_replicas
    cpus = os.cpu_count() if cpus is None else cpus
    return 2 if (cpus or 1) >= 2 and config.stream.backend == "redis" else 1


@serve.deployment(max_ongoing_requests=64)
@serve.ingress()
class PathwaysDeployment:
    """One replica: the service over the snapshot and the online store, behind FastAPI."""

    def __init__(self, config: dict[str, Any], playback: PlaybackBackend = "online") -> None:
        from serving.guards import configure_json_logs
        from serving.logic import build_service
        from serving.playback import InMemoryPlaybackStore

        configure_json_logs()
        cfg = PathwaysConfig.model_validate(config)
        from serving.api import settle_process
        from serving.artwork import load_artwork_policy

        store = InMemoryPlaybackStore() if playback == "memory" else None
        self.service = build_service(cfg, playback=store, artwork=load_artwork_policy(cfg))
        settle_process(cfg.serving.gil_switch_interval_ms)  # gc.freeze, GIL hand-over

    def __serve_build_asgi_app__(self) -> Any:
        from serving.api import create_app

        return create_app(self.service, echo_request_id=False)  # Serve's proxy returns X-Request-ID

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        unknown = set(user_config) - RECONFIGURABLE
        if unknown:
            raise ValueError(f"user_config: cannot change {sorted(unknown)} at run time; allowed: {sorted(RECONFIGURABLE)}")
        pages = self.service.pages
        pages.config = pages.config.with_overrides({f"serving.{k}": v for k, v in user_config.items()})


def haproxy_env() -> dict[str, str]:
    """The environment Ray Serve reads (at ``ray.init``) to put HAProxy in front of the replicas,
    which then take HTTP themselves ("direct ingress"); its files in a private short-named folder
    (not Serve's shared /tmp default; HAProxy refuses socket paths over 97 characters)."""
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None)
    if binary is None:
        raise ValueError("serving.ingress = 'haproxy' needs the haproxy binary (apt-get install -y haproxy)")
    files = Path(tempfile.mkdtemp(prefix="pwh-", dir="/tmp"))
    return {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_BINARY_PATH": binary,
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock")}


def build_app(config: PathwaysConfig, playback: PlaybackBackend = "online") -> serve.Application:
    """The bound Serve application for ``config`` (``data_dir`` made absolute for the replica)."""
    config = config.with_overrides({"data_dir": str(Path(config.data_dir).resolve())})
    metrics_dir = Path(tempfile.mkdtemp(prefix="pathways-metrics-"))
    deployment = PathwaysDeployment.options(  # type: ignore[attr-defined]  # a serve.Deployment at run time
        max_ongoing_requests=config.serving.max_ongoing_requests,
        max_queued_requests=config.serving.max_queued_requests,
        num_replicas=default_replicas(config),
        ray_actor_options={"num_cpus": config.serving.replica_cpus,
                           "runtime_env": {"env_vars": {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}}},
    )
    return deployment.bind(config.model_dump(mode="json"), playback)


def start(config: PathwaysConfig, port: int | None = None, temp_dir: Path | str | None = None,
          playback: PlaybackBackend = "online", timeout_s: float = 120.0, access_log: bool = False) -> str:
    """Start Ray, Serve and the app; returns the base URL once ``/livez`` answers (``/readyz`` says
    whether a snapshot is loaded: a replica starts, and serves fallbacks, without one).

    ``access_log=False`` (the default) drops Serve's per-request log lines, as uvicorn's
    ``access_log=False`` does: they cost throughput and flood the driver's console."""
    import httpx
    import ray

    if config.auth.enabled:  # fail here, with the reason, rather than in every replica's constructor
        from serving.access import auth_config
        from serving.auth import load_secret

        load_secret(auth_config(config))
    port = int(port or config.serving.port)
    temp_dir = str(temp_dir or tempfile.mkdtemp(prefix="pathways-ray-"))
    env = {"RAY_worker_niceness": str(config.serving.worker_niceness)}  # Ray's default, 15, starves replicas
    if config.serving.ingress == "haproxy":
        env |= haproxy_env()
    _ENV_SET.update(k for k in env if k not in os.environ)
    os.environ.update(env)
    ray.init(_temp_dir=temp_dir, include_dashboard=False, ignore_reinit_error=True, configure_logging=False)
    logging_config = {"enable_access_log": access_log, "log_level": "INFO" if access_log else "WARNING"}
    serve.start(http_options={"host": config.serving.host, "port": port, "request_timeout_s": config.serving.request_timeout_s},
                logging_config=logging_config)
    serve.run(build_app(config, playback), name="pathways", route_prefix="/", logging_config=logging_config)
    base = f"http://{config.serving.host}:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/livez", timeout=5.0).status_code == 200:
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
        for key in _ENV_SET:  # what start() set for the HAProxy ingress: not inherited by the next start
            os.environ.pop(key, None)
        _ENV_SET.clear()


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
