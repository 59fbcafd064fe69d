"""World generator bench: generation time of the size presets, and the streaming rate at scale.

Usage: python bench/world.py [--runs 3] [--sizes tiny small default] [--large-profiles 20000]
                             [--large-size large|100k|300k|1m] [--json PATH]

1. Presets: ``generate_world`` of each size, median seconds over ``--runs``; the baseline, measured
   in the same run, is writing the resulting event table to Parquet (the I/O floor that streaming
   to disk pays anyway): ``ratio = generate / write``.
2. Scale: the ``--large-size`` preset's catalog and members (``large``: ~1M profiles) are drawn
   once (timed), then the events of its first ``--large-profiles`` profiles are simulated block by block, as
   ``generate_to_dir`` does; profiles/s and events/s extrapolate to the whole world. Peak
   resident memory is reported (it must not grow with the number of blocks).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pyarrow.parquet as pq

from world.generator import BLOCK_PROFILES, _Draw, generate_world
from world.sizes import preset


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_presets(sizes: list[str], runs: int) -> list[dict]:
    rows = []
    for size in sizes:
        gen, write = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            world = generate_world(preset(size))
            gen.append(time.perf_counter() - t0)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                pq.write_table(world.events, Path(tmp) / "events.parquet")
                write.append(time.perf_counter() - t0)
        g, w = float(np.median(gen)), float(np.median(write))
        rows.append({"size": size, "titles": world.titles.num_rows, "profiles": world.profiles.num_rows,
                     "events": world.events.num_rows, "generate_s": g, "write_parquet_s": w, "ratio": g / w,
                     "events_per_s": world.events.num_rows / g})
    return rows


def bench_large(n_profiles: int, size: str = "large") -> dict:
    t0 = time.perf_counter()
    draw = _Draw(preset(size))
    draw_s = time.perf_counter() - t0
    rss_after_draw = _rss_mb()
    hi = min(draw.n_profiles, max(BLOCK_PROFILES, n_profiles))
    events = 0
    t0 = time.perf_counter()
    for table in draw.blocks(0, hi):
        events += table.num_rows
    sim_s = time.perf_counter() - t0
    rate = hi / sim_s
    return {"profiles_total": draw.n_profiles, "draw_s": draw_s, "profiles_simulated": hi, "simulate_s": sim_s,
            "profiles_per_s": rate, "events_per_s": events / sim_s, "events_per_profile": events / hi,
            "projected_total_min": (draw_s + draw.n_profiles / rate) / 60, "rss_after_draw_mb": rss_after_draw,
            "peak_rss_mb": _rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "default"])
    parser.add_argument("--large-profiles", type=int, default=20_000, help="0 to skip the scale bench")
    parser.add_argument("--large-size", default="large", help="the preset of the scale bench (e.g. 1m)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    generate_world(preset("tiny"))  # warm imports
    presets = bench_presets(args.sizes, args.runs)
    print(f"{'size':8} {'titles':>7} {'profiles':>9} {'events':>10} {'generate s':>11} {'write s':>8} {'ratio':>6} {'events/s':>10}")
    for r in presets:
        print(f"{r['size']:8} {r['titles']:7,} {r['profiles']:9,} {r['events']:10,} {r['generate_s']:11.2f} "
              f"{r['write_parquet_s']:8.2f} {r['ratio']:6.1f} {r['events_per_s']:10,.0f}")
    result: dict = {"presets": presets}
    if args.large_profiles:
        large = bench_large(args.large_profiles, args.large_size)
        result["large"] = large
        print(f"\n{args.large_size}: {large['profiles_total']:,} profiles drawn in {large['draw_s']:.1f} s "
              f"(rss {large['rss_after_draw_mb']:.0f} MB); simulated {large['profiles_simulated']:,} in "
              f"{large['simulate_s']:.1f} s = {large['profiles_per_s']:,.0f} profiles/s, "
              f"{large['events_per_s']:,.0f} events/s ({large['events_per_profile']:.0f} events/profile); "
              f"whole world ~{large['projected_total_min']:.0f} min; peak rss {large['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
