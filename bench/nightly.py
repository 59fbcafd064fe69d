"""The nightly job at scale: end-to-end runs per world size, pages/s, replica memory, resume, rollback.

    python bench/nightly.py --sizes 10k[,100k,300k,1m] [--root DIR] [--json PATH] [--only runs,pages,replicas,...]
        [--sample 2000] [--kills 5] [--replica-profiles 100000,1000000] [--redis-profiles 100000,300000] [--quality-check] [--quality-sizes]

1. ``runs``: per size, the world is generated (once, kept under ``--root``) and ``pathways nightly``
   runs end to end in a child process: wall time, the job's peak RSS and seconds per stage
   (its ``summary.json``). ``scaling_ratio``: time per profile at the largest size over the smallest.
2. ``pages_profiles_per_s`` / ``loop_profiles_per_s``: on the largest size's finished run, in
   process, the block path (``PageBuilder.build``) and the per-profile loop (``build_loop``) on the
   same ``--sample`` profiles; ``pages_identical`` says whether both built the same bytes.
3. ``replica_rss_mb``: a serving replica (a child process opening the snapshot the way serving
   does and reading random pages) over synthetic page stores of each ``--replica-profiles`` size,
   made from the real pages and profile records (as publish writes them: a replica reads one record
   per request, ``profiles_from``); the Redis store when ``redis-server`` is installed.
   ``page_read_p99_ms``: one profile's page read, p99, per store and size.
4. ``resume_identical``: the pages and publish stages redone with the job killed (SIGKILL) at a
   random point ``--kills`` times in a row, then finished: the published checksum against the
   uninterrupted run's. ``rollback_errors`` / ``rollback_s``: readers hammer the live snapshot
   while ``rollback`` switches serving back; errors and the time until the old version serves
   (from a store up long enough to hold the rollback target loaded: ``rollback_standby_ready_s``).
5. ``quality`` (``--quality-check``): top row NDCG@20 trained on a sample vs on all (``bench/nightly_quality.py``).
   ``quality_by_size`` (``--quality-sizes``): at every size, the NDCG@20 of the top row as the nightly
   trains it (the configured sample, the rest folded in); ``quality_holds_at_scale``: the largest
   world scores at least the smallest, and ``quality_difference`` / ``_se`` / ``_z``: by how much,
   in standard errors (two worlds within noise of each other read as a tie either way).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.nightly_quality import (  # noqa: E402
    compare_sizes,
    comparison_line,
    quality_check,
    quality_line,
    sample_quality,
    sizes_line,
)
from bench.pages import block_and_loop  # noqa: E402
from pathways.config import PathwaysConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0",
       "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
SIZE_PROFILES = {"1k": 1_000, "10k": 10_000, "30k": 30_000, "100k": 100_000, "300k": 300_000, "1m": 1_000_000}


def nightly_cmd(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pathways.cli", "nightly", "--data-dir", str(data_dir), "--no-progress", *extra]


def _ran(summary: Path) -> bool:
    """Whether ``summary`` records a run that did its stages (not one that found them all done)."""
    return summary.is_file() and not all(s["skipped"] for s in json.loads(summary.read_text())["stages"].values())


def run_size(size: str, root: Path, reuse: bool = False) -> dict[str, Any]:
    """Generate the world of ``size`` (once) and run the nightly job on it end to end (``reuse``:
    report the finished run already there, if any, instead of running again; else every stage is
    redone, ``--no-resume``)."""
    from datetime import datetime

    from pipelines.nightly import finished_run
    from world.generator import generate_to_dir
    from world.sizes import preset

    data = root / size
    world = data / "raw" / "world"
    gen_s = 0.0
    if not (world / "events.parquet").is_file():
        t0 = time.perf_counter()
        generate_to_dir(preset(size), world)
        gen_s = time.perf_counter() - t0
    config = PathwaysConfig(data_dir=data)
    summary_path = finished_run(config).run_dir / "summary.json"
    if not (reuse and _ran(summary_path)):
        done = subprocess.run(nightly_cmd(data, "--no-resume"), env=ENV, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"nightly on {size} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text())
    wall = (datetime.fromisoformat(summary["finished"]) - datetime.fromisoformat(summary["started"])).total_seconds()
    stages = summary["stages"]
    return {
        "profiles": stages["pages"]["profiles"], "world_s": round(gen_s, 1), "wall_s": round(wall, 1),
        "peak_rss_gb": round(summary["peak_rss_gb"], 2),
        "stages_s": {k: round(v["seconds"], 1) for k, v in stages.items() if not v["skipped"]},
        "stages_peak_rss_gb": {k: round(v.get("peak_rss_gb") or 0.0, 2) for k, v in stages.items()},
        # cores busy on average: CPU seconds over wall seconds (this VM has 2)
        "stages_cores": {k: round(v["cpu_s"] / v["seconds"], 2) for k, v in stages.items()
                         if not v["skipped"] and v.get("cpu_s") is not None and v["seconds"] > 0},
    }


def pages_throughput(data: Path, sample: int, ray_workers: int = 0, repeats: int = 3) -> dict[str, Any]:
    """Block path (on ``pipeline.threads`` threads, and on one) and per-profile loop on the same
    profiles, in this process, median of ``repeats`` (``bench.pages.block_and_loop``); with ``ray_workers``
    also the block path on that many Ray actors (their start-up included: what a night pays)."""
    from datetime import datetime

    from pipelines.nightly import finished_run
    from pipelines.page_builder import PageBuildSpec
    from pipelines.stages import profile_blocks, retrieval_sources

    config = PathwaysConfig(data_dir=data)
    ctx = finished_run(config)
    out = ctx.outputs
    extra = retrieval_sources(config, Path(out["train_retrieval"]["dir"]))
    top_row = out["train_top_row"].get("path")
    plays = Path(out["pages"]["dir"]) / "plays.parquet"
    spec = PageBuildSpec(config, Path(out["train_als"]["path"]), datetime.fromisoformat(out["features"]["as_of"]),
                         extra, Path(top_row) if top_row else None, plays if plays.is_file() else None)
    blocks = []
    for block in profile_blocks(ctx)[1]:
        blocks.append(block)
        if sum(map(len, blocks)) >= sample:
            break
    n = sum(map(len, blocks))
    fast: list[Any] = []
    out = {"sample": n, **block_and_loop(spec, blocks, repeats, fast)}
    if ray_workers:
        import tempfile

        import ray

        from pipelines.page_builder import build_pages

        on_ray = config.with_overrides({"pipeline.executor": "ray", "pipeline.workers": ray_workers})
        ray.init(num_cpus=ray_workers, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="pw-", dir="/tmp"))
        got: list[Any] = []
        try:
            t0 = time.perf_counter()
            build_pages(dataclasses.replace(spec, config=on_ray), blocks, got.extend, progress=False)
            seconds = time.perf_counter() - t0
        finally:
            ray.shutdown()
        out.update({"ray_workers": ray_workers, "ray_profiles_per_s": round(n / seconds, 1),
                    "ray_identical": sorted(got) == sorted(fast)})
    return out


def synthetic_snapshot(source: Path, root: Path, n: int, redis_url: str | None) -> Path:
    """A snapshot of ``n`` profiles whose pages are the real snapshot's, reused round robin."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pathways.pagestore import RedisPageStore
    from pathways.profilerecords import profile_rows, write_profiles
    from pathways.snapshot import FALLBACK, PAGES_SQLITE, PROFILES, TITLES, SnapshotWriter, iter_page_blobs

    blobs = [b for block in iter_page_blobs(source / PAGES_SQLITE) for _, b in block]
    version = f"v{n:09d}{'r' if redis_url else 's'}"
    writer = SnapshotWriter(root, version)
    profiles = pq.read_table(source / PROFILES)
    table = profiles.take(pa.array(np.arange(n) % profiles.num_rows)).set_column(0, "profile_id", pa.array(np.arange(1, n + 1), pa.int64()))
    sink = RedisPageStore.from_url(redis_url, "bench", 10.0).writer(version, 5000) if redis_url else writer.page_writer()
    for start in range(1, n + 1, 50_000):
        sink.put_many((pid, blobs[pid % len(blobs)]) for pid in range(start, min(start + 50_000, n + 1)))
    if redis_url:  # as publish writes them: profile records beside the pages (a replica reads one per request)
        sink.put_profiles(*profile_rows(table, 5000))
    sink.close()
    if redis_url:
        writer.page_writer().close()  # an empty file record; pages and records are read from Redis
    else:  # publish's layout: the profile records in pages.sqlite, written after the pages
        write_profiles(writer.staging / PAGES_SQLITE, *profile_rows(table, 50_000))
    writer.write_table(PROFILES, table)
    for name in (TITLES, FALLBACK):
        shutil.copyfile(source / name, writer.staging / name)
    store = {"backend": "redis", "url": redis_url, "prefix": "bench", "timeout_s": 1.0} if redis_url else {"backend": "sqlite"}
    writer.publish({"counts": {"profiles": n}, "page_store": store, "synthetic": True})
    return root / version


def replica_child(snapshot: Path, reads: int) -> None:
    """Child process: open the snapshot as serving does, read random pages, print RSS and latency."""
    import numpy as np
    import psutil

    from serving.snapshots import load_snapshot

    snap = load_snapshot(snapshot)
    n, rng, times = len(snap.profiles), random.Random(0), []
    for _ in range(reads):
        pid = rng.randint(1, n)
        t0 = time.perf_counter()
        page, profile = snap.page(pid), snap.profile(pid)
        times.append((time.perf_counter() - t0) * 1000)
        assert page is not None and profile is not None
    rss = psutil.Process().memory_info().rss / 2**20
    print(json.dumps({"rss_mb": round(rss, 1), "p50_ms": round(float(np.percentile(times, 50)), 3),
                      "p99_ms": round(float(np.percentile(times, 99)), 3), "profiles_from": type(snap.profiles).__name__}))


def replicas(source: Path, root: Path, sizes: list[int], redis_sizes: list[int]) -> dict[str, Any]:
    from pathways.pagestore import RedisPageStore
    from tests.redis_server import start_redis, stop_redis

    out: dict[str, dict[str, Any]] = {"sqlite": {}, "redis": {}}
    proc = None
    try:
        if redis_sizes and shutil.which("redis-server"):
            (root / "redis").mkdir(parents=True, exist_ok=True)
            proc, port = start_redis(root / "redis")
        for store, todo in (("sqlite", sizes), ("redis", redis_sizes if proc else [])):
            for n in todo:
                url = f"127.0.0.1:{port}" if store == "redis" else None
                snap = synthetic_snapshot(source, root / "replicas", n, url)
                child = subprocess.run([sys.executable, __file__, "--replica-child", str(snap)], env=ENV, cwd=ROOT,
                                       capture_output=True, text=True, check=True)
                out[store][str(n)] = json.loads(child.stdout.strip().splitlines()[-1])
                shutil.rmtree(snap)
                if store == "redis":
                    RedisPageStore.from_url(url, "bench", 10.0).client.flushall()
    finally:
        if proc is not None:
            stop_redis(proc)
    return out


def _pages_done(db: Path) -> int:
    """Pages committed so far. The connection is closed here: ``with sqlite3.connect(...)`` only ends
    a transaction, and a connection left open (one that met an error stayed alive) holds the WAL,
    so the job's publish could not settle the file ("database is locked")."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as conn:
            return int(conn.execute("SELECT count(*) FROM pages").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def resume_check(data: Path, kills: int, seed: int = 0) -> dict[str, Any]:
    """Redo pages + publish, SIGKILLing the job ``kills`` times in a row at random points of the
    pages stage (when a random number of pages is committed); compare the published checksum with
    the uninterrupted run's."""
    from pathways.snapshot import current_dir, read_manifest
    from pipelines.nightly import finished_run

    config = PathwaysConfig(data_dir=data)
    ctx = finished_run(config)
    expected = read_manifest(current_dir(config.snapshots_dir))["pages_sha256"]
    total = int(ctx.outputs["pages"]["profiles"])
    summary = (ctx.run_dir / "summary.json").read_text()  # the uninterrupted run's, restored below
    for stage in ("pages", "publish"):
        (ctx.run_dir / f"{stage}.done.json").unlink(missing_ok=True)
    db = ctx.run_dir / "pages" / "pages.sqlite"
    db.unlink(missing_ok=True)
    rng = random.Random(seed)
    targets = sorted(int(rng.uniform(0.05, 0.95) * total) for _ in range(kills))
    progress = []
    for target in targets:
        child = subprocess.Popen(nightly_cmd(data), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        while child.poll() is None and _pages_done(db) < target:
            time.sleep(0.2)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        progress.append(_pages_done(db))
    done = subprocess.run(nightly_cmd(data), env=ENV, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the nightly run after {kills} kills failed:\n{done.stderr[-3000:]}")
    got = read_manifest(current_dir(config.snapshots_dir))["pages_sha256"]
    (ctx.run_dir / "summary.json").write_text(summary)
    return {"resume_identical": got == expected, "kills": kills, "kill_targets": targets,
            "pages_done_after_each_kill": progress}


def rollback_check(data: Path, readers: int = 4, seconds: float = 3.0) -> dict[str, Any]:
    """Readers on the live snapshot while ``rollback`` switches back and forth; errors and switch time."""
    from pathways.snapshot import PAGES_SQLITE, current_dir, current_version, iter_page_blobs, list_versions
    from pipelines.publish import rollback
    from serving.snapshots import SnapshotStore

    config = PathwaysConfig(data_dir=data)
    live, versions = current_version(config.snapshots_dir), list_versions(config.snapshots_dir)
    if len(versions) < 2:
        return {"rollback_errors": None, "note": "one snapshot only"}
    store = SnapshotStore(config.snapshots_dir, poll_s=0.05, background=True)
    store.refresh()
    ids = [pid for pid, _ in next(iter_page_blobs(current_dir(config.snapshots_dir) / PAGES_SQLITE, 5000))]  # with a page
    errors, reads, stop = [0], [0], threading.Event()

    def read() -> None:
        rng = random.Random(threading.get_ident())
        while not stop.is_set():
            try:
                snap = store.state().snapshot
                if snap is None or snap.page(rng.choice(ids)) is None:
                    errors[0] += 1
            except Exception:  # noqa: BLE001 - counted
                errors[0] += 1
            reads[0] += 1

    threads = [threading.Thread(target=read, daemon=True) for _ in range(readers)]
    t_up = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    while store.standby_version is None and time.perf_counter() - t_up < 60:  # a replica up for a while has it
        time.sleep(0.01)
    standby_s = round(time.perf_counter() - t_up, 3)
    switches = []
    for target in (None, live):
        t0 = time.perf_counter()
        version = rollback(config, target)
        while store.state().snapshot.version != version and time.perf_counter() - t0 < 10:
            time.sleep(0.005)
        switches.append(round(time.perf_counter() - t0, 3))
        time.sleep(seconds / 3)
    stop.set()
    for t in threads:
        t.join()
    return {"rollback_errors": errors[0], "rollback_reads": reads[0], "rollback_s": switches,
            "rollback_standby_ready_s": standby_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10k")
    parser.add_argument("--root", type=Path, default=Path("/tmp/pathways-bench-nightly"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--ray-workers", type=int, default=2, help="also time the pages on Ray actors (0: not)")
    parser.add_argument("--replica-profiles", default="100000,1000000")
    parser.add_argument("--redis-profiles", default="100000,300000")
    parser.add_argument("--reuse-runs", action="store_true", help="report finished runs under --root instead of rerunning")
    parser.add_argument("--only", default="runs,pages,replicas,resume,rollback", help="the parts to run")
    parser.add_argument("--replica-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3, help="pages: median of this many runs of each path")
    parser.add_argument("--quality-check", action="store_true", help="top row NDCG@20: a sample vs all (largest size)")
    parser.add_argument("--quality-sample", type=int, default=0, help="0: the top row's configured sample, else profiles / 5")
    parser.add_argument("--quality-sizes", action="store_true",
                        help="top row NDCG@20 of the sampled model at every size (the largest must score at least the smallest)")
    args = parser.parse_args()
    if args.replica_child:
        replica_child(args.replica_child, args.reads)
        return 0
    if min(args.repeats, args.sample, args.kills) < 1 or args.ray_workers < 0:
        parser.error("--repeats, --sample and --kills must be >= 1, --ray-workers >= 0")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = sorted(set(sizes) - set(SIZE_PROFILES) - {"default", "small"})
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {sorted(SIZE_PROFILES)} (or default, small)")
    only = set(args.only.split(","))
    result: dict[str, Any] = {"runs": {}}
    for size in sizes:
        result["runs"][size] = run_size(size, args.root, reuse=args.reuse_runs or "runs" not in only)
        print(f"{size}: {json.dumps(result['runs'][size])}", flush=True)
    first, last = result["runs"][sizes[0]], result["runs"][sizes[-1]]
    # one size (or the same twice) is no scaling result: null rather than a ratio of 1.0
    result["scaling_ratio"] = (round((last["wall_s"] / last["profiles"]) / (first["wall_s"] / first["profiles"]), 3)
                               if len(set(sizes)) > 1 else None)
    largest = args.root / sizes[-1]
    if "pages" in only:
        result.update(pages_throughput(largest, args.sample, args.ray_workers, args.repeats))
    if "replicas" in only:
        from pathways.snapshot import current_dir

        ints = [int(x) for x in args.replica_profiles.split(",") if x]
        redis_ints = [int(x) for x in args.redis_profiles.split(",") if x]
        rep = replicas(current_dir(largest / "snapshots"), args.root, ints, redis_ints)
        for key, field in (("replica_rss_mb", "rss_mb"), ("page_read_p99_ms", "p99_ms"), ("page_read_p50_ms", "p50_ms"), ("replica_profiles_from", "profiles_from")):
            result[key] = {store: {n: r[field] for n, r in by.items()} for store, by in rep.items()}
    if "resume" in only:
        result.update(resume_check(largest, args.kills))
    if "rollback" in only:
        result.update(rollback_check(largest))
    if args.quality_check:
        result.update(quality_check(largest, args.quality_sample))
    if args.quality_sizes:
        by_size = {size: sample_quality(args.root / size, args.quality_sample) for size in sizes}
        result["quality_by_size"] = by_size
        result.update(compare_sizes(by_size))
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def print_table(r: dict[str, Any]) -> None:
    print(f"\n{'size':<8}{'profiles':>10}{'wall s':>9}{'s/1k prof':>11}{'peak GiB':>10}  stages (s / peak GiB / cores)")
    for size, run in r["runs"].items():
        peaks, cores = run.get("stages_peak_rss_gb", {}), run.get("stages_cores", {})
        stages = ", ".join(f"{k} {v:g}/{peaks.get(k, 0):g}" + (f"/{cores[k]:g}" if k in cores else "")
                           for k, v in run["stages_s"].items())
        print(f"{size:<8}{run['profiles']:>10,}{run['wall_s']:>9.1f}{1000 * run['wall_s'] / run['profiles']:>11.2f}"
              f"{run['peak_rss_gb']:>10.2f}  {stages}")
    ratio = r["scaling_ratio"]
    print(f"scaling ratio (time per profile, largest / smallest): {'n/a (one size)' if ratio is None else ratio}")
    if "sample" in r:
        print(f"pages stage in-process on {r['sample']:,} profiles (median of {len(r['block_runs_s'])}): block path on "
              f"{r['pages_threads']} threads {r['pages_profiles_per_s']} profiles/s, on one {r['pages_1thread_profiles_per_s']}, "
              f"per-profile loop {r['loop_profiles_per_s']} (x{r['pages_profiles_per_s'] / r['loop_profiles_per_s']:.2f}), "
              f"identical pages: {r['pages_identical']}")
        if "ray_profiles_per_s" in r:
            print(f"block path on {r['ray_workers']} Ray actors (start-up included): {r['ray_profiles_per_s']} profiles/s, "
                  f"identical pages: {r['ray_identical']}")
    if "replica_rss_mb" in r:
        print(f"\n{'store':<8}{'profiles':>10}{'replica RSS MB':>16}{'read p50 ms':>13}{'read p99 ms':>13}")
        for store, by in r["replica_rss_mb"].items():
            for n, rss in by.items():
                print(f"{store:<8}{int(n):>10,}{rss:>16.1f}{r['page_read_p50_ms'][store][n]:>13.3f}"
                      f"{r['page_read_p99_ms'][store][n]:>13.3f}")
    if "resume_identical" in r:
        print(f"\nresume after {r['kills']} random kills identical: {r['resume_identical']} "
              f"(pages done after each kill: {r['pages_done_after_each_kill']})")
    if "rollback_s" in r:
        print(f"rollback under load: {r['rollback_errors']} errors in {r['rollback_reads']} reads, switch {r['rollback_s']} s"
              f" (the rollback target kept loaded {r.get('rollback_standby_ready_s')} s after start-up)")
    if "quality" in r:
        print(quality_line(r["quality"]))
    if "quality_by_size" in r:
        print(sizes_line(r["quality_by_size"]), "\n" + comparison_line(r))


if __name__ == "__main__":
    raise SystemExit(main())
