"""Events through the stream: HTTP load, kill -9 faults, real-time visibility and nightly ingest scaling.

Usage: python bench/events.py [--rate 2000] [--batch 50] [--seconds 60] [--kills 5]
                              [--lake-sizes 10000000,100000000] [--day-events 1000000] [--runs 3]
                              [--data-dir DIR] [--json PATH] [--skip faults,ingest,baseline]

1. Load: the FastAPI app on bare uvicorn (one worker, in-memory playback, embedded segment log)
   and the lake consumer (``python -m features.stream lake``, niced) as processes; ``wrk`` (its own
   process, not the server's interpreter: ``bench/events_load.lua`` through ``bench/wrkload.py``)
   posts bodies generated up front, ``--rate`` events/s in batches of ``--batch`` for ``--seconds``,
   each connection paced on a fixed schedule (1% rejected by the API: ts in the future; events of
   titles the lake's catalog lacks: quarantined by the lake). Latency percentiles are wrk's, from
   the moment a request is written; bodies wrk sent but saw no answer for are posted again (same
   ids) so accepted ids are exact. A probe posts a play and reads the page until the title leads
   "Continue watching" (realtime_p99_s). Baseline: the old path (one fsynced Parquet file per
   request) vs a log append.
2. Faults: a paced Python client (correctness, not latency) posts the same load again, with
   ``--kills`` kill -9 of the server and of the lake consumer at random moments (each restarted at
   once); the client retries refused batches with the same ids. Then the consumer drains the
   stream and accepted (by id) is compared with the lake: lost, duplicated, accepted = landed +
   quarantined.
3. Ingest: lakes of each ``--lake-sizes`` events (``--day-events`` per day: a bigger lake is an
   older one) and one new day of events through the nightly ingest (median of ``--runs``);
   ingest_ratio = time(largest) / time(smallest). Baseline: the old duplicate check's cost (read
   every id in the lake) at each size (``bench/events_lake.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pathways.config import PathwaysConfig
from pathways.snapshot import PROFILES, TITLES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = frozenset({"faults", "ingest", "baseline"})  # what --skip may leave out
GONE_TITLES = 30  # titles 1..30 are in the snapshot but not in the lake's catalog: quarantined


def _sibling(name: str):
    """``bench/<name>.py`` as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_for(data_dir: Path) -> PathwaysConfig:
    return PathwaysConfig(data_dir=data_dir.resolve()).with_overrides(
        {"stream.flush_interval_s": 1.0, "stream.flush_events": 20_000, "auth.enabled": False})


# ----------------------------------------------------------------------------- processes
def serve(data_dir: Path, port: int) -> None:
    import uvicorn

    from serving.api import create_app
    from serving.logic import build_service
    from serving.playback import InMemoryPlaybackStore

    app = create_app(build_service(config_for(data_dir), playback=InMemoryPlaybackStore()))
    gc.collect()
    gc.freeze()  # as a replica does (serving/deployment.py): start-up objects out of the collector's scans
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_up(base: str, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"no answer from {base}")


class Procs:
    """The server and the lake consumer as child processes, killable and restartable."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.server: subprocess.Popen | None = None
        self.consumer: subprocess.Popen | None = None
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start_server(self) -> None:
        self.server = subprocess.Popen([sys.executable, __file__, "--serve", str(self.data_dir), str(self.port)],
                                       env=self.env, cwd=ROOT)

    def start_consumer(self) -> None:
        self.consumer = subprocess.Popen(  # niced: batch work, off the API's cores in a real deployment
            ["nice", "-n", "10", sys.executable, "-m", "features.stream", "lake", "--set", f"data_dir={self.data_dir}",
             "--set", "stream.flush_interval_s=1.0"], env=self.env, cwd=ROOT, stderr=subprocess.DEVNULL)

    def kill(self, which: str) -> None:
        proc = getattr(self, which)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (self.start_server if which == "server" else self.start_consumer)()

    def stop(self) -> None:
        for proc in (p for p in (self.server, self.consumer) if p is not None and p.poll() is None):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


async def probe_alongside(base: str, probe: dict, load) -> tuple[dict, list[float]]:
    """``load()`` (blocking: wrk) in a thread while the real-time probe runs; (load's result, probe's)."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        got = await asyncio.gather(asyncio.to_thread(load), realtime_probe(client, probe))
    return got[0], got[1]


async def realtime_probe(client, probe: dict) -> list[float]:
    """Post a play, read the page until the title leads "Continue watching" and a "Because you
    watched" row anchored on it is there (``because_you_watched:<title>``, from the snapshot's
    similar-titles table: ``write_bench_similar``); seconds per sample, until both are visible."""
    rng = np.random.default_rng(7)
    out: list[float] = []
    end = time.perf_counter() + probe["seconds"]
    k = 0
    while time.perf_counter() < end:
        pid = int(rng.choice(probe["adults"]))
        title = int(rng.integers(GONE_TITLES + 1, probe["n_titles"] + 1))
        play = {"event_id": f"probe-{k}", "event_type": "play", "profile_id": pid, "title_id": title, "fraction_watched": 0.3}
        k += 1
        t0 = time.perf_counter()
        r = await client.post("/api/v1/events", json=[play])
        if r.status_code != 202:
            continue
        while time.perf_counter() - t0 < 5.0:
            page = (await client.get("/api/v1/pathways", params={"profile_id": pid})).json()
            rows = page.get("rows") or [{}]
            continuing = rows[0].get("source") == "continue_watching" and rows[0]["titles"][0]["title_id"] == title
            if continuing and any(r.get("row_id") == f"because_you_watched:{title}" for r in rows):
                out.append(time.perf_counter() - t0)
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
    return out


def write_bench_similar(snapshot_dir: Path, n_titles: int, k: int = 30) -> None:
    """The synthetic snapshot's similar-titles table (``pipelines/similar.py`` over seeded random
    factors: the synthetic snapshot has no trained ALS), so a streamed play gets its row."""
    from pathways.artifacts.factors import FactorArtifacts
    from pathways.snapshot import SIMILAR
    from pipelines.similar import similar_titles_table

    rng = np.random.default_rng(3)
    factors = FactorArtifacts(np.zeros((1, 16)), rng.normal(size=(n_titles, 16)), [0], np.arange(1, n_titles + 1))
    pq.write_table(similar_titles_table(factors, k), snapshot_dir / SIMILAR)


def lake_counts(config: PathwaysConfig) -> tuple[list[str], list[str]]:
    """Ids landed and quarantined in the lake (the real-time probe's plays left out)."""
    from features.ingest import read_events, read_quarantine

    landed = read_events(config.lake_dir)["event_id"].to_pylist()
    quarantined = [i for t in read_quarantine(config.lake_dir) for i in t["event_id"].to_pylist()]
    return [i for i in landed if not i.startswith("probe-")], [i for i in quarantined if not i.startswith("probe-")]


def wait_drained(config: PathwaysConfig, timeout_s: float = 300.0) -> None:
    from features.stream.segment_log import SegmentLog

    reader = SegmentLog(config.data_dir / "stream")
    deadline = time.monotonic() + timeout_s
    while reader.lag(config.stream.lake_group) > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)  # the consumer's last flush and commit


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=2000.0, help="events/s")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--lake-sizes", default="10000000,100000000")
    p.add_argument("--day-events", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--profiles", type=int, default=2000)
    p.add_argument("--titles", type=int, default=3000)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--skip", default="", help="phases to leave out, comma-separated: faults, ingest, baseline")
    p.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    skip = {x for x in args.skip.split(",") if x}
    if skip - PHASES:
        p.error(f"--skip: unknown phase(s) {', '.join(sorted(skip - PHASES))}; known: {', '.join(sorted(PHASES))}")
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return 0
    root = Path(args.data_dir or tempfile.mkdtemp(prefix="pathways-events-")).resolve()
    config = config_for(root / "data")
    bs, lake, load = _sibling("serving"), _sibling("events_lake"), _sibling("events_load")
    bs.build_snapshot(config.snapshots_dir, args.profiles, n_titles=args.titles, n_rows=10, row_len=20, config=config)
    live = config.snapshots_dir / (config.snapshots_dir / "CURRENT").read_text().strip()
    write_bench_similar(live, args.titles)  # before the server loads the snapshot
    world = config.raw_dir / "world"
    world.mkdir(parents=True, exist_ok=True)
    titles = pq.read_table(live / TITLES)
    pq.write_table(titles.filter(pc.greater(titles["title_id"], GONE_TITLES)), world / "titles.parquet")
    profiles = pq.read_table(live / PROFILES)
    pq.write_table(profiles, world / "profiles.parquet")
    adults = profiles.filter(pc.equal(profiles["max_maturity_level"], 4))["profile_id"].to_numpy()

    port = bs.free_port()
    base = f"http://127.0.0.1:{port}"
    procs = Procs(config.data_dir, port)
    procs.start_server()
    procs.start_consumer()
    n_req = int(args.seconds * args.rate / args.batch)
    rate_rps = args.rate / args.batch
    try:
        wait_up(base)
        warm = asyncio.run(load.run_load(base, load.make_batches(int(2 * rate_rps), args.batch, "w", args.profiles, args.titles, 0), rate_rps))
        probe = {"seconds": args.seconds - 2, "adults": adults, "n_titles": args.titles}
        load_batches = load.make_batches(int(n_req * 1.25), args.batch, "a", args.profiles, args.titles, 1)  # wrk's margin
        clean, realtime_s = asyncio.run(probe_alongside(
            base, probe, lambda: load.wrk_load(_sibling("wrkload").run_script, base, load_batches, rate_rps, args.seconds, root / "wrk")))
        faults = {"accepted_ids": set(), "p99_ms": float("nan"), "refused_attempts": 0}
        if "faults" not in skip:
            rng = np.random.default_rng(11)
            moments = np.sort(rng.uniform(2.0, args.seconds - 2.0, 2 * args.kills))
            which = rng.permutation(["server"] * args.kills + ["consumer"] * args.kills)

            async def chaos() -> None:
                start = time.perf_counter()
                for at, proc in zip(moments, which):
                    await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
                    await asyncio.to_thread(procs.kill, str(proc))

            faults = asyncio.run(load.run_load(base, load.make_batches(n_req, args.batch, "b", args.profiles, args.titles, 2),
                                          rate_rps, chaos=chaos))
        wait_drained(config)
    finally:
        procs.stop()
    accepted = warm["accepted_ids"] | clean["accepted_ids"] | faults["accepted_ids"]
    landed, quarantined = lake_counts(config)
    in_lake = set(landed) | set(quarantined)
    sizes = [int(s) for s in args.lake_sizes.split(",")]
    nan = {"ingest_s": float("nan"), "old_id_scan_s": float("nan")}
    scaling = lake.ingest_scaling(root / "ingest", sizes, args.day_events, args.runs) if "ingest" not in skip else {}
    base_cost = ({"old_file_per_request_ms": float("nan"), "stream_append_ms": float("nan")} if "baseline" in skip else
                 lake.old_path_vs_log(load.make_batches(200, args.batch, "c", args.profiles, args.titles, 3), root / "baseline"))
    small, big = scaling.get(min(sizes), nan), scaling.get(max(sizes), nan)
    rt = np.array(realtime_s or [np.nan])
    result = {
        "events_per_s": clean["events_per_s"], "p50_ms": clean["p50_ms"], "p99_ms": clean["p99_ms"],
        "p999_ms": clean["p999_ms"], "max_ms": clean["max_ms"], "reposted_after_load": clean["reposted"],
        "p99_ms_during_kills": faults["p99_ms"], "refused_attempts_during_kills": faults["refused_attempts"],
        "accepted": len(accepted), "landed": len(landed), "quarantined": len(quarantined),
        "lost": len(accepted - in_lake), "duplicated": len(landed) + len(quarantined) - len(in_lake),
        "not_accepted_but_in_lake": len(in_lake - accepted), "kills": 0 if "faults" in skip else 2 * args.kills,
        "ingest_ratio_100m_vs_10m": big["ingest_s"] / small["ingest_s"], "lake_sizes": sizes,
        "ingest": {str(k): v for k, v in scaling.items()},
        "old_id_scan_ratio": big["old_id_scan_s"] / small["old_id_scan_s"],
        "realtime_p99_s": float(np.percentile(rt, 99)), "realtime_samples": len(realtime_s),
        **base_cost, "append_speedup_vs_old": base_cost["old_file_per_request_ms"] / base_cost["stream_append_ms"],
    }
    rows = [("events/s through the API", f"{result['events_per_s']:.0f}", f">= {args.rate:.0f}"),
        ("p50 / p99 / p99.9 per request (ms, wrk)",
         f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f} / {result['p999_ms']:.1f}", "p99 < 50"),
        ("p99 during kills (ms), refused tries", f"{result['p99_ms_during_kills']:.1f}, {faults['refused_attempts']}", "-"),
        ("accepted = landed + quarantined", f"{result['accepted']} = {result['landed']} + {result['quarantined']}", "exact"),
        (f"lost / duplicated ({result['kills']} kill -9)", f"{result['lost']} / {result['duplicated']}", "0 / 0"),
        ("nightly ingest of one day (s), lakes", " / ".join(f"{v['ingest_s']:.2f}@{k:,}" for k, v in scaling.items()), "-"),
        ("ingest ratio largest/smallest lake", f"{result['ingest_ratio_100m_vs_10m']:.2f}", "<= 1.5"),
        ("baseline: old id scan ratio", f"{result['old_id_scan_ratio']:.2f}", "(grows)"),
        ("realtime p99 (s), samples", f"{result['realtime_p99_s']:.3f}, {result['realtime_samples']}", "< 1"),
        ("per request: old file / stream append (ms)",
         f"{base_cost['old_file_per_request_ms']:.2f} / {base_cost['stream_append_ms']:.2f}"
         f" ({result['append_speedup_vs_old']:.1f}x)", "-"),
    ]
    print(f"{'metric':<44}{'measured':<44}bar")
    for name, value, bar in rows:
        print(f"{name:<44}{value:<44}{bar}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    if args.data_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
