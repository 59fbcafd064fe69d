"""Events -> features: ingest throughput, feature computation, online read and playback-write latency.

    python bench/features.py [--size default] [--runs 3] [--ops 200] [--json PATH]

The events are the synthetic world's (``--size`` preset). Each line is the median of ``--runs``
runs (``--ops`` calls for latencies) with the ratio to a baseline measured in the same run:
ingest against a plain Parquet read + write of the same file, feature computation against a
pandas group-by count of the same events, online reads against Feast's raw
``get_online_features``, playback writes against Feast's ``push``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median(fn, n: int) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="default", choices=["tiny", "small", "default"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.runs < 1 or args.ops < 1:
        parser.error("--runs and --ops must be >= 1")

    import pandas as pd
    import pyarrow.parquet as pq
    from feast.data_source import PushMode

    from features.compute import compute_features
    from features.history import PlaybackState
    from features.ingest import ingest
    from features.online import PLAYBACK_PUSH, OnlineFeatureClient
    from features.store import build_feature_store
    from pathways.config import FeatureConfig
    from world.generator import generate_to_dir
    from world.sizes import preset

    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    generate_to_dir(preset(args.size), tmp / "world")
    src = tmp / "world" / "events.parquet"
    titles, profiles = pq.read_table(tmp / "world" / "titles.parquet"), pq.read_table(tmp / "world" / "profiles.parquet")
    events = pq.read_table(src)
    n = events.num_rows
    rows: list[tuple[str, float, float, str]] = []

    lakes = iter(range(10**6))
    t_ingest = _median(lambda: ingest(src, titles, profiles, tmp / f"lake{next(lakes)}"), args.runs)
    t_copy = _median(lambda: pq.write_table(pq.read_table(src), tmp / "copy.parquet"), args.runs)
    rows.append((f"ingest {n:,} events", t_ingest, t_ingest / t_copy, f"{n / t_ingest:,.0f} rows/s"))

    t_feat = _median(lambda: compute_features(events, titles, profiles), args.runs)
    frame = events.select(["profile_id", "title_id", "event_type"]).to_pandas()
    t_group = _median(lambda: frame.groupby(["profile_id", "event_type"]).size(), args.runs)
    rows.append(("compute_features", t_feat, t_feat / t_group, "daily point-in-time snapshots"))

    store, _ = build_feature_store(events, titles, profiles, FeatureConfig(), tmp / "repo")
    client = OnlineFeatureClient(tmp / "repo")
    pid = int(profiles.column("profile_id")[0].as_py())
    client.profile_features(pid)
    raw = store.store
    t_read = _median(lambda: client.profile_features(pid), args.ops)
    t_raw = _median(lambda: raw.get_online_features(features=["profile_online:profile_vector"], entity_rows=[{"profile_id": pid}]), args.ops)
    rows.append(("online profile read", t_read, t_read / t_raw, "OnlineFeatureClient.profile_features"))

    state = PlaybackState(in_progress={1: (0.4, 1.7e9)}, finished=frozenset({2}))
    client.write_playback_state(pid, state)
    t_write = _median(lambda: client.write_playback_state(pid, state), args.ops)
    frame1 = pd.DataFrame({"profile_id": [pid], "event_timestamp": [pd.Timestamp.now(tz="UTC")],
                           "in_progress_title_ids": [[1]], "in_progress_fractions": [[0.4]],
                           "in_progress_updated": [[1_700_000_000]], "finished_title_ids": [[2]]})
    t_push = _median(lambda: client._open().push(PLAYBACK_PUSH, frame1, to=PushMode.ONLINE), args.ops)
    rows.append(("playback write", t_write, t_write / t_push, "write_to_online_store vs push"))

    print(f"features bench ({args.size} world, medians of {args.runs} runs / {args.ops} calls)")
    print(f"{'what':<28}{'median':>12}{'x baseline':>12}  note")
    for what, secs, ratio, note in rows:
        shown = f"{secs * 1000:.2f} ms" if secs < 1 else f"{secs:.2f} s"
        print(f"{what:<28}{shown:>12}{ratio:>12.2f}  {note}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{"what": w, "median_s": s, "ratio_to_baseline": r, "note": t} for w, s, r, t in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
