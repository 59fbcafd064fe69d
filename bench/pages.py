"""Throughput of the nightly pages stage: in-process vs Ray actors, on a finished nightly run.

    python bench/pages.py --data-dir var [--repeats 3] [--workers 2] [--no-ray] [--json PATH]

Needs a data dir where ``pathways nightly`` (or ``make run``) has run. First, in this process on
the same profiles: the block path (``PageBuilder.build_blocks`` on ``pipeline.threads`` threads,
and on one) and today's per-profile loop (``build_loop``), each ``--repeats`` times, with the
median profiles per second, the ratio to the loop and whether all gave the same bytes
(``pages_profiles_per_s``, ``pages_1thread_profiles_per_s``, ``loop_profiles_per_s`` in the
JSON). Then each executor builds every page ``--repeats`` times against the in-process one; Ray's
time includes opening one page builder per actor (the play events, models, feature store).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathways.config import load_config  # noqa: E402


def block_and_loop(spec: Any, blocks: list[list[Any]], repeats: int, pages_out: list[Any] | None = None) -> dict[str, Any]:
    """The block path (on ``pipeline.threads`` threads, and on one) and the per-profile loop on the
    same blocks in this process, ``repeats`` times each (alternating); prints the table and returns
    the medians (profiles per second); the block path's pages are appended to ``pages_out``."""
    from pipelines.page_builder import PageBuilder

    builder = PageBuilder.open(spec)
    threads = spec.config.pipeline.threads
    n = sum(map(len, blocks))
    builder.build(blocks[0][:20]), builder.build_loop(blocks[0][:20])  # warm the caches alike
    paths: dict[str, Callable[[], list[Any]]] = {
        "block": lambda: [page for part in builder.build_blocks(blocks, threads) for page in part],
        "block_1": lambda: [page for part in builder.build_blocks(blocks, 1) for page in part],
        "loop": lambda: [page for block in blocks for page in builder.build_loop(block)],
    }
    times: dict[str, list[float]] = {label: [] for label in paths}
    pages: dict[str, list[Any]] = {}
    for _ in range(repeats):
        for label, build in paths.items():
            t0 = time.perf_counter()
            pages[label] = build()
            times[label].append(time.perf_counter() - t0)
    rate = {label: n / statistics.median(t) for label, t in times.items()}
    identical = pages["block"] == pages["loop"] == pages["block_1"]
    if pages_out is not None:
        pages_out.extend(pages["block"])
    print(f"candidates + ranking + assembly in process, {n:,} profiles, median of {repeats}")
    print(f"{'path':<24}{'median s':>10}{'profiles/s':>12}{'x loop':>8}")
    names = (("loop", "per-profile loop"), ("block_1", "block path, 1 thread"), ("block", f"block path, {threads} threads"))
    for label, name in names:
        print(f"{name:<24}{statistics.median(times[label]):>10.2f}{rate[label]:>12.1f}{rate[label] / rate['loop']:>8.2f}")
    print(f"identical pages: {identical}")
    return {"pages_profiles_per_s": round(rate["block"], 1), "pages_1thread_profiles_per_s": round(rate["block_1"], 1),
            "loop_profiles_per_s": round(rate["loop"], 1), "pages_threads": threads, "pages_identical": identical,
            "block_runs_s": times["block"], "block_1thread_runs_s": times["block_1"], "loop_runs_s": times["loop"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true", help="only the in-process block path and loop")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.repeats < 1 or args.workers < 1:
        parser.error("--repeats and --workers must be >= 1")

    import ray

    from pipelines.nightly import finished_run
    from pipelines.page_builder import PageBuildSpec, build_pages
    from pipelines.stages import _profile_contexts, retrieval_sources

    config = load_config(None, data_dir=str(args.data_dir.resolve()))
    ctx = finished_run(config)
    outputs = ctx.outputs
    if "train_retrieval" not in outputs:
        parser.error(f"no finished nightly run for the inputs in {args.data_dir} (run `pathways nightly` first)")
    profiles = _profile_contexts(ctx)
    blocks = [profiles[i : i + config.pipeline.chunk_size] for i in range(0, len(profiles), config.pipeline.chunk_size)]
    extra = retrieval_sources(config, Path(outputs["train_retrieval"]["dir"]))
    as_of = datetime.fromisoformat(outputs["features"]["as_of"])
    top_row = outputs.get("train_top_row", {}).get("path")

    paths = block_and_loop(PageBuildSpec(config, Path(outputs["train_als"]["path"]), as_of, extra,
                                         Path(top_row) if top_row else None), blocks, args.repeats)
    results: dict[str, dict[str, float]] = {}
    executors: tuple[tuple[str, dict[str, Any]], ...] = (("local", {}),) + (() if args.no_ray else ((f"ray x{args.workers}", {"pipeline.executor": "ray", "pipeline.workers": args.workers}),))
    for label, overrides in executors:
        cfg = config.with_overrides(overrides)
        spec = PageBuildSpec(cfg, Path(outputs["train_als"]["path"]), as_of, extra, Path(top_row) if top_row else None)
        if overrides:
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                     _temp_dir=tempfile.mkdtemp(prefix="pw-", dir="/tmp"))
        times = []
        try:
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                build_pages(spec, blocks, lambda part: None, progress=False)
                times.append(time.perf_counter() - t0)
        finally:
            if overrides:
                ray.shutdown()
        med = statistics.median(times)
        results[label] = {"median_s": med, "profiles_per_s": len(profiles) / med, "runs": len(times)}
    base = results["local"]["median_s"]
    print(f"pages stage, {len(profiles):,} profiles, median of {args.repeats}")
    print(f"{'executor':<12}{'median s':>10}{'profiles/s':>12}{'x local':>9}")
    for label, r in results.items():
        r["ratio_to_local"] = base / r["median_s"]
        print(f"{label:<12}{r['median_s']:>10.1f}{r['profiles_per_s']:>12.1f}{r['ratio_to_local']:>9.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"profiles": len(profiles), **paths, "executors": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
