"""GET /api/v1/pathways throughput and latency: the Ray Serve app vs the same FastAPI app on
bare uvicorn (the baseline), on a synthetic snapshot (default 2,000 profiles x 40 rows x 40 titles).

Usage: python bench/serving.py [--profiles 2000] [--runs 3] [--seconds 8] [--concurrency 1,8,32]
                               [--data-dir DIR] [--json PATH] [--skip-ray]

Both servers run the same ``create_app(build_service(config))`` with in-memory playback state
(the Feast online store is left out: this compares the serving stacks, not the store). The load
generator is an asyncio httpx client in this process, with C concurrent loops requesting random
known profiles for a fixed duration after a warm-up; it shares the machine's cores with the
server. Prints the median over ``--runs`` of requests/s, p50 and p99 (ms) per server and
concurrency, and the ratio Ray Serve / uvicorn measured in the same run. ``errors`` counts
responses that were not a personalized 200 (e.g. over ``personalize_budget_ms`` under load:
those get the fallback page) or dropped connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and would shadow the ``serving`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np
import pyarrow as pa

from experiments.allocation import assign_cell
from features.schema import KIDS_MAX_MATURITY, MATURITY_LEVELS, PROFILE_SCHEMA, REGIONS, TITLE_SCHEMA
from pathways.config import PathwaysConfig
from pathways.snapshot import FALLBACK, FALLBACK_SCHEMA, PAGES, PAGES_SCHEMA, PROFILES, TITLES, SnapshotWriter


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
    """Publish a synthetic snapshot under ``root``; returns its version. Titles are licensed everywhere."""
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
    page_json, cells = [], []
    for pid, region, level in zip(pids.tolist(), prof_region.tolist(), levels.tolist()):
        cell = assign_cell(pid, config.experiment)
        page = {"profile_id": pid, "region": region, "max_maturity_level": level, "personalized": True, "reason": None,
                "cell": cell, "snapshot": None, "fallback_rung": None,
                "rows": _rows(rng, allowed[level], maturity, n_rows, row_len)}
        page_json.append(json.dumps(page))
        cells.append(cell)
    keys = [(r, m) for r in regions for m in MATURITY_LEVELS]
    fallback_json = [json.dumps({"profile_id": None, "region": r, "max_maturity_level": m, "personalized": False,
                                 "reason": "non-personalized fallback", "fallback_rung": "cohort",
                                 "rows": _rows(rng, allowed[m], maturity, n_rows, row_len)}) for r, m in keys]
    version = f"v{datetime.now(UTC):%Y%m%dT%H%M%S%f}Z"
    writer = SnapshotWriter(root, version)
    writer.write_table(PAGES, pa.table({"profile_id": pa.array(pids, pa.int64()), "cell": cells, "page_json": page_json},
                                       schema=PAGES_SCHEMA))
    writer.write_table(FALLBACK, pa.table({"region": [k[0] for k in keys], "max_maturity_level": pa.array([k[1] for k in keys], pa.int8()),
                                           "page_json": fallback_json}, schema=FALLBACK_SCHEMA))
    writer.write_table(TITLES, titles)
    writer.write_table(PROFILES, profiles)
    writer.publish({"counts": {"profiles": n_profiles}, "synthetic": True})
    return version


# ----------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_config(data_dir: Path) -> PathwaysConfig:
    return PathwaysConfig(data_dir=data_dir.resolve())


def _serve_uvicorn(data_dir: Path, port: int) -> None:
    """Child-process entry: the FastAPI app on bare uvicorn, one worker."""
    import uvicorn

    from serving.api import create_app
    from serving.logic import build_service
    from serving.playback import InMemoryPlaybackStore

    app = create_app(build_service(bench_config(data_dir), playback=InMemoryPlaybackStore()))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_keep_alive=60)


def _wait(base: str, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"no answer from {base}")


# ----------------------------------------------------------------------------- load
async def _load(base: str, concurrency: int, seconds: float, n_profiles: int, seed: int) -> dict[str, float]:
    import httpx

    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as client:
        async def worker(stop_at: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                pid = int(rng.integers(1, n_profiles + 1))
                t0 = time.perf_counter()
                try:
                    r = await client.get("/api/v1/pathways", params={"profile_id": pid, "row_count": 40})
                    ok = r.status_code == 200 and b'"personalized":true' in r.content
                except httpx.TransportError:  # counted, not fatal: the server may drop a connection
                    ok = False
                if record:
                    latencies.append(time.perf_counter() - t0)
                    errors += not ok

        warm = time.perf_counter() + min(2.0, seconds / 4)
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t0 + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000.0
    return {"rps": len(lat) / elapsed, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "requests": int(len(lat)), "errors": errors}


def measure(base: str, levels: list[int], runs: int, seconds: float, n_profiles: int) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {c: [] for c in levels}
    for run in range(runs):
        for c in levels:
            out[c].append(asyncio.run(_load(base, c, seconds, n_profiles, seed=run * 100 + c)))
    return out


def median_of(results: list[dict]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in results) for k in ("rps", "p50_ms", "p99_ms", "errors")}


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profiles", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--data-dir", type=Path, help="reuse/keep the synthetic snapshot here (default: a temp dir)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--skip-ray", action="store_true", help="measure the uvicorn baseline only")
    p.add_argument("--_uvicorn", type=int, help=argparse.SUPPRESS)  # child mode: serve on this port
    args = p.parse_args(argv)
    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="pathways-bench-serving-"))).resolve()
    if args._uvicorn:
        _serve_uvicorn(data_dir, args._uvicorn)
        return 0
    levels = [int(c) for c in args.concurrency.split(",")]
    config = bench_config(data_dir)
    from pathways.snapshot import current_version

    if current_version(config.snapshots_dir) is None:
        t0 = time.perf_counter()
        build_snapshot(config.snapshots_dir, args.profiles, config=config)
        print(f"synthetic snapshot: {args.profiles} profiles x 40 rows x 40 titles in {time.perf_counter() - t0:.1f} s")

    results: dict[str, dict[int, list[dict]]] = {}
    port = free_port()
    with open(data_dir / "uvicorn.log", "w") as child_log:
        child = subprocess.Popen([sys.executable, __file__, "--data-dir", str(data_dir), "--_uvicorn", str(port)],
                                 stdout=child_log, stderr=subprocess.STDOUT)
        try:
            _wait(f"http://127.0.0.1:{port}")
            results["uvicorn"] = measure(f"http://127.0.0.1:{port}", levels, args.runs, args.seconds, args.profiles)
        finally:
            child.terminate()
            child.wait(30)
    if not args.skip_ray:
        from serving import deployment

        base = deployment.start(config, port=free_port(), temp_dir=Path(tempfile.mkdtemp(prefix="pw-ray-")), playback="memory")
        try:
            results["ray_serve"] = measure(base, levels, args.runs, args.seconds, args.profiles)
        finally:
            deployment.stop()

    table = {server: {c: median_of(r) for c, r in by_c.items()} for server, by_c in results.items()}
    print(f"\nGET /api/v1/pathways, {args.profiles} profiles x 40 x 40, median of {args.runs} runs x {args.seconds:g} s")
    print(f"{'server':<10} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'req/s vs uvicorn':>17}")
    for server, by_c in table.items():
        for c, m in by_c.items():
            ratio = m["rps"] / table["uvicorn"][c]["rps"]
            print(f"{server:<10} {c:>4} {m['rps']:>8.1f} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f} {m['errors']:>6.0f} {ratio:>16.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": vars(args) | {"json": str(args.json), "data_dir": str(data_dir)},
                                         "median": table, "runs": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
