"""GET /api/v1/pathways under load, faults and hostile callers: the Ray Serve app vs bare uvicorn.

Usage: python bench/serving.py [--profiles 2000] [--seconds 20] [--window 30] [--rates 50,100,200,300]
                               [--fault-rate 100] [--no-optimized] [--data-dir DIR] [--json PATH]

The world: a synthetic snapshot (``--profiles`` profiles, 15% kids, 40 rows x 40 titles, pages in
the page store), the Feast online store on a real ``redis-server`` and the event stream on a second
one (so the default is two replicas), auth on (a service token). Every server is a child process;
load comes from ``wrk`` (``bench/wrkload.py``: random profiles, 5% never seen, row_count=40, paced
with ``delay()``), so the generator does not share the server's interpreter. Measured, in order:

1. saturation (8 connections, no pacing) of the same app on bare uvicorn (1 worker), of the Serve
   app behind Serve's default proxy, with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``, and behind Serve's
   HAProxy ingress (``serving.ingress = "haproxy"``, when the binary is installed); ratios to uvicorn;
2. on the ``--ingress`` variant (default HAProxy): p50/p99 at each offered rate of ``--rates``, and
   the highest achieved rate with p99 < 50 ms and no error (``max_rps_p99_under_50ms``);
3. the hostile-input table of ``tests/serving/test_hostile.py`` over HTTP (exact status and message);
   an overload window (``--overload-connections``, unpaced): the share of "overloaded" fallbacks and 503s;
4. faults, each in its own ``--window`` s window at ``--fault-rate`` req/s: the online store's Redis
   killed (then restarted: personalization must return without restarting Serve), the live snapshot
   removed, the online store paused (``CLIENT PAUSE``: the overlay stage made slow), one replica
   killed (errors while it dies, then a clean window after), the artwork policy removed (its
   champion alias deleted from the registry: default artwork, marked degraded). The world registers
   a small trained artwork policy (``--no-artwork-policy``: none), so every page runs the artwork stage.

``--json PATH`` writes ``max_rps_p99_under_50ms``, ``latency`` (per offered rate: ``offered_rps``,
``rps``, ``p50_ms``, ``p99_ms``, ``errors``, shares), ``saturation`` (per server),
``saturation_ratio_vs_uvicorn`` (the swept variant) and ``saturation_ratios``, ``hostile`` (``cases``,
``wrong_status``, ``errors_5xx``), ``overload`` and ``faults`` (per window: ``errors_5xx``,
``timeouts``, ``personalized_share``, ``degraded_share``, ``empty_pages``, ``recovered_s``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this file's folder comes first on sys.path and would shadow the ``serving`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from experiments.allocation import assign_cell
from features.schema import KIDS_MAX_MATURITY, MATURITY_LEVELS, PROFILE_SCHEMA, REGIONS, TITLE_SCHEMA
from pathways.config import ConfigError, PathwaysConfig, parse_override
from pathways.pageblob import encode_page
from pathways.snapshot import FALLBACK, FALLBACK_SCHEMA, PROFILES, TITLES, SnapshotWriter
from pathways.types import CompactRows


def _wrkload():
    spec = importlib.util.spec_from_file_location("bench_wrkload", HERE / "wrkload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# ----------------------------------------------------------------------------- synthetic snapshot
def _rows(rng: np.random.Generator, allowed: np.ndarray, maturity: np.ndarray, n_rows: int, row_len: int) -> list[dict]:
    """Page rows as ``Row.to_dict`` dicts: the first 10 rows hold distinct titles, as the assembler makes them."""
    top = rng.choice(allowed, size=min(len(allowed), 10 * row_len), replace=False)
    rows = []
    for k in range(n_rows):
        ids = top[k * row_len : (k + 1) * row_len] if k < 10 else rng.choice(allowed, size=row_len, replace=False)
        rows.append({
            "row_id": f"src{k % 6}:{k}", "title": f"Row {k}", "source": f"src{k % 6}", "evidence": f"because {k}",
            "titles": [{"title_id": int(t), "name": f"Title {t}", "maturity_level": int(maturity[t - 1]),
                        "score": round(1.0 / (1 + j), 6), "artwork_id": int(t) * 10, "artwork_propensity": 1.0}
                       for j, t in enumerate(ids.tolist())],
        })
    return rows


def build_snapshot(root: Path, n_profiles: int, n_titles: int = 3000, n_rows: int = 40, row_len: int = 40,
                   seed: int = 0, config: PathwaysConfig | None = None) -> str:
    """Publish a synthetic snapshot under ``root`` (pages in ``pages.sqlite``); returns its version.
    Titles are licensed everywhere; profile ``p`` belongs to account ``p``."""
    rng = np.random.default_rng(seed)
    config = config or PathwaysConfig()
    ids = np.arange(1, n_titles + 1)
    maturity = rng.integers(0, max(MATURITY_LEVELS) + 1, n_titles)
    titles = pa.table({
        "title_id": pa.array(ids, pa.int64()), "name": [f"Title {t}" for t in ids],
        "genres": [["Drama"]] * n_titles, "cast": [["A"]] * n_titles,
        "release_date": [date(2020, 1, 1)] * n_titles, "runtime_min": pa.array([100] * n_titles, pa.int32()),
        "maturity_level": pa.array(maturity, pa.int8()), "regions": [list(REGIONS)] * n_titles,
        "artwork_ids": [[int(t) * 10, int(t) * 10 + 1, int(t) * 10 + 2] for t in ids],
        "artwork_themes": [["genre:Drama", "mood:dark", "cast:A"]] * n_titles,
    }, schema=TITLE_SCHEMA)
    regions = list(REGIONS)
    kids = rng.random(n_profiles) < 0.15
    levels = np.where(kids, KIDS_MAX_MATURITY, 4)
    prof_region = rng.choice(regions, n_profiles)
    pids = np.arange(1, n_profiles + 1)
    profiles = pa.table({
        "profile_id": pa.array(pids, pa.int64()), "account_id": pa.array(pids, pa.int64()), "is_kids": kids,
        "region": prof_region, "max_maturity_level": pa.array(levels, pa.int8()), "devices": [["tv"]] * n_profiles,
        "created_at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * n_profiles, PROFILE_SCHEMA.field("created_at").type),
    }, schema=PROFILE_SCHEMA)
    allowed = {m: ids[maturity <= m] for m in MATURITY_LEVELS}
    version = f"v{datetime.now(UTC):%Y%m%dT%H%M%S%f}Z"
    writer = SnapshotWriter(root, version)
    pages = writer.page_writer()
    pages.put_many((pid, encode_page(assign_cell(pid, config.experiment),
                                     CompactRows.from_dicts(_rows(rng, allowed[level], maturity, n_rows, row_len))))
                   for pid, level in zip(pids.tolist(), levels.tolist()))
    pages.close()
    keys = [(r, m) for r in regions for m in MATURITY_LEVELS]
    fallback_json = [json.dumps({"profile_id": None, "region": r, "max_maturity_level": m, "personalized": False,
                                 "reason": "non-personalized fallback", "fallback_rung": "cohort",
                                 "rows": _rows(rng, allowed[m], maturity, n_rows, row_len)}) for r, m in keys]
    writer.write_table(FALLBACK, pa.table({"region": [k[0] for k in keys], "max_maturity_level": pa.array([k[1] for k in keys], pa.int8()),
                                           "page_json": fallback_json}, schema=FALLBACK_SCHEMA))
    writer.write_table(TITLES, titles)
    writer.write_table(PROFILES, profiles)
    writer.publish({"counts": {"profiles": n_profiles}, "synthetic": True})
    return version


# ----------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` on ``port`` (no persistence), killable and restartable."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port, self.directory, self.proc = port, directory, None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.directory)], stdout=subprocess.DEVNULL)
        self.client().ping() if self._wait() else None

    def _wait(self) -> bool:
        import redis

        for _ in range(100):
            try:
                return bool(self.client().ping())
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on {self.port} did not start")

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=2.0)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def bench_config(data_dir: Path, online_port: int | None = None, stream_port: int | None = None) -> PathwaysConfig:
    over: dict[str, object] = {"auth.rate_limit": "1000000/minute", "auth.service_subjects": ["bench", "test-backend"]}
    if online_port:
        over |= {"features.online_store": "redis", "features.redis_connection": f"127.0.0.1:{online_port}"}
    if stream_port:
        over |= {"stream.backend": "redis", "stream.redis_url": f"redis://127.0.0.1:{stream_port}/0"}
    return PathwaysConfig(data_dir=data_dir.resolve()).with_overrides(over)


def _child_server(kind: str, config_path: Path, port: int) -> None:
    """Child-process entry: the app on bare uvicorn (1 worker) or on Ray Serve, until SIGTERM."""
    config = PathwaysConfig.model_validate_json(config_path.read_text())
    if os.environ.get("PATHWAYS_BENCH_INGRESS"):
        config = config.with_overrides({"serving.ingress": os.environ["PATHWAYS_BENCH_INGRESS"]})
    if kind == "uvicorn":
        import uvicorn

        from serving.api import create_app, settle_process
        from serving.artwork import load_artwork_policy
        from serving.logic import build_service

        app = create_app(build_service(config, artwork=load_artwork_policy(config)))
        settle_process(config.serving.gil_switch_interval_ms)  # as the Serve replica does (serving.deployment)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=60)
        return
    from serving import deployment

    deployment.start(config, port=port, temp_dir=Path(tempfile.mkdtemp(prefix="pw-bench-", dir="/tmp")))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    deployment.stop()


class Server:
    """One server child process (``kind``: uvicorn, ray, ray-optimized) on a free port."""

    def __init__(self, kind: str, config_path: Path, log_dir: Path) -> None:
        self.kind, self.port = kind, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if kind == "ray-optimized":
            env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
        if kind == "ray-haproxy":  # serving.ingress = "haproxy" (the child sets it in the config it loads)
            env["PATHWAYS_BENCH_INGRESS"] = "haproxy"
        self.log = open(log_dir / f"{kind}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, __file__, "--_server", kind.split("-")[0], str(config_path),
                                      str(self.port)], env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, token: str, timeout_s: float = 240.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.base}/api/v1/pathways", params={"profile_id": 1}, timeout=5.0,
                              headers={"Authorization": f"Bearer {token}"})
                if r.status_code == 200 and r.json()["personalized"] and not r.json()["degraded"]:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited; see {self.log.name}")
            time.sleep(0.5)
        raise TimeoutError(f"{self.kind} server not ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def replica_pids() -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ServeReplica:pathways" in line]


def _faults():
    spec = importlib.util.spec_from_file_location("bench_serving_faults", HERE / "serving_faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profiles", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=20.0, help="per offered rate (the issue's bar: 60)")
    p.add_argument("--saturation-seconds", type=float, default=15.0)
    p.add_argument("--saturation-rate", type=float, default=0.0, help="0: unpaced (a smoke test sets a low rate)")
    p.add_argument("--rates", default="50,100,200,300")
    p.add_argument("--window", type=float, default=30.0, help="seconds per fault window")
    p.add_argument("--fault-rate", type=float, default=100.0)
    p.add_argument("--no-optimized", action="store_true", help="skip RAY_SERVE_THROUGHPUT_OPTIMIZED")
    p.add_argument("--no-faults", action="store_true")
    p.add_argument("--no-artwork-policy", action="store_true", help="register no artwork policy (default artwork)")
    p.add_argument("--overload-connections", type=int, default=96, help="the overload window's connections")
    p.add_argument("--no-haproxy", action="store_true", help="skip Serve's HAProxy ingress")
    p.add_argument("--sweep-only", action="store_true", help="only the rate sweep on the --ingress variant")
    p.add_argument("--ingress", choices=["proxy", "haproxy"], default="haproxy",
                   help="the Serve variant that gets the rate sweep, the hostile table and the faults")
    p.add_argument("--data-dir", type=Path, help="keep the world here (default: a temp dir)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help='a config override for the servers (a JSON value), e.g. serving.page_workers=3, a.b=\'"text"\'')
    p.add_argument("--_server", nargs=3, help=argparse.SUPPRESS)  # child mode: KIND CONFIG PORT
    args = p.parse_args(argv)
    try:  # checked before any server starts: a bad override is a clear error, not a half-run benchmark
        overrides = dict(parse_override(o) for o in args.set)
        PathwaysConfig().with_overrides(overrides)
    except (ValueError, ConfigError) as exc:
        p.error(f"--set: {exc}")
    if args._server:
        _child_server(args._server[0], Path(args._server[1]), int(args._server[2]))
        return 0
    wrk, faults = _wrkload(), _faults()
    haproxy = not args.no_haproxy and (shutil.which("haproxy") is not None or Path("/usr/sbin/haproxy").is_file())
    main_kind = "ray-haproxy" if haproxy and args.ingress == "haproxy" else "ray"
    if not wrk.wrk_available():
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    from features.store import FeatureStoreManager
    from serving.access import auth_config
    from serving.auth import issue_token
    from tests.serving.snapshot_fixtures import TEST_SECRET

    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="pathways-bench-serving-"))).resolve()
    online = RedisServer(free_port(), data_dir / "redis-online")
    stream = RedisServer(free_port(), data_dir / "redis-stream")
    online.start()
    stream.start()
    config = bench_config(data_dir, online.port, stream.port)
    if args.set:
        config = config.with_overrides(overrides)
    config_path = data_dir / "bench_config.json"
    config_path.write_text(config.model_dump_json())
    # The test suite's key: the hostile table's hand-made tokens (expired, other key ...) apply as written.
    secret = Path(auth_config(config).secret_file)
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(TEST_SECRET)
    secret.chmod(0o600)
    token = issue_token(auth_config(config), TEST_SECRET, "bench", ["pages:read", "events:write"], ttl_s=24 * 3600)
    t0 = time.perf_counter()
    version = build_snapshot(config.snapshots_dir, args.profiles, config=config)
    FeatureStoreManager(config.features, config.feature_repo_dir).apply()
    artwork = None if args.no_artwork_policy else faults.register_artwork_policy(
        config, pq.read_table(config.snapshots_dir / version / TITLES))
    print(f"world: {args.profiles} profiles x 40 rows x 40 titles, Feast online store on redis :{online.port}, "
          f"stream on redis :{stream.port} ({time.perf_counter() - t0:.1f} s)")

    def load(base: str, seconds: float, rate: float, connections: int | None = None, seed: int = 0) -> dict:
        conns = connections or max(4, int(rate // 4))  # ~250 ms think time: latency barely lowers the offered rate
        return wrk.run_wrk(base, token, args.profiles, seconds, conns, rate, seed=seed)

    results: dict = {"config": {k: str(v) for k, v in vars(args).items()}, "saturation": {}, "latency": []}
    try:
        kinds = ["uvicorn", "ray", *([] if args.no_optimized else ["ray-optimized"]), *(["ray-haproxy"] if haproxy else [])]
        if args.sweep_only:
            kinds = [main_kind]
        for kind in kinds:
            server = Server(kind, config_path, data_dir)
            try:
                server.wait_ready(token)
                load(server.base, 3.0, args.saturation_rate, connections=8)  # warm-up
                sat = load(server.base, args.saturation_seconds, args.saturation_rate, connections=8)
                results["saturation"][kind] = sat
                print(f"saturation {kind:<14} {sat['rps']:7.1f} req/s  p50 {sat['p50_ms']:6.1f}  p99 {sat['p99_ms']:6.1f} ms"
                      f"  errors {sat['errors']}  personalized {sat['personalized_share']:.1%}")
                if kind != main_kind:
                    continue
                print(f"{'offered':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'personalized':>12}")
                for rate in [float(r) for r in args.rates.split(",")]:
                    r = load(server.base, args.seconds, rate, seed=int(rate))
                    results["latency"].append(r)
                    print(f"{rate:>8.0f} {r['rps']:>7.1f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['errors']:>6}"
                          f" {r['personalized_share']:>11.1%}")
                if args.sweep_only:
                    continue
                results["hostile"] = faults.hostile_table(server.base, config)
                print(f"hostile table: {results['hostile']['cases']} cases, {results['hostile']['wrong_status']} wrong, "
                      f"{results['hostile']['errors_5xx']} 5xx")
                over = load(server.base, args.window, 0, connections=args.overload_connections)
                results["overload"] = over
                print(f"overload ({args.overload_connections} connections, unpaced): {over['rps']:.1f} req/s, p99 "
                      f"{over['p99_ms']:.1f} ms, overloaded fallbacks {over['overloaded_share']:.1%}, "
                      f"503 {over['status_503']}, other errors {over['errors'] - over['status_503']}")
                if not args.no_faults:
                    print(f"faults ({args.window:g} s windows at {args.fault_rate:g} req/s):")
                    results["faults"] = faults.fault_windows(
                        lambda s, base=server.base: load(base, s, args.fault_rate), server.base, token, online,
                        config.snapshots_dir / version, replica_pids, args.window, artwork)
            finally:
                server.stop()
    finally:
        online.kill()
        stream.kill()
    sat = results["saturation"]
    ok = [r["rps"] for r in results["latency"] if r["p99_ms"] < 50.0 and r["errors"] == 0]
    results["max_rps_p99_under_50ms"] = max(ok, default=0.0)
    results["serve_variant"] = main_kind
    if "uvicorn" in sat and main_kind in sat:
        results["saturation_ratio_vs_uvicorn"] = sat[main_kind]["rps"] / sat["uvicorn"]["rps"]
        results["saturation_ratios"] = {k: v["rps"] / sat["uvicorn"]["rps"] for k, v in sat.items()}
    ratios = ", ".join(f"{k} {v:.2f}" for k, v in results.get("saturation_ratios", {}).items())
    print(f"max rate with p99 < 50 ms ({main_kind}): {results['max_rps_p99_under_50ms']:.1f} req/s; saturation vs "
          f"uvicorn: {ratios or 'not measured'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
