"""Helpers of ``bench/events.py``: nightly ingest time against lakes of several sizes, and the old
landing path (one fsynced Parquet file per request) as the append baseline."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.schema import EVENT_SCHEMA


def old_path_vs_log(batches: list[list[dict]], tmp: Path) -> dict:
    """Per request, in process: one fsynced Parquet file (the old landing) vs a segment-log append."""
    from features.stream.segment_log import SegmentLog
    from pathways.snapshot import fsync_dir

    def row(e: dict) -> dict:
        return {**{n: None for n in EVENT_SCHEMA.names}, **e, "ts": datetime.now(UTC)}

    old, new = [], []
    log = SegmentLog(tmp / "log")
    for k, events in enumerate(batches[:200]):
        rows = [row(e) for e in events]
        t0 = time.perf_counter()
        final = tmp / "old" / f"events-{k}.parquet"
        final.parent.mkdir(exist_ok=True)
        with open(final.with_suffix(".tmp"), "wb") as fh:
            pq.write_table(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), fh)
            os.fsync(fh.fileno())
        os.replace(final.with_suffix(".tmp"), final)
        fsync_dir(final.parent)
        t1 = time.perf_counter()
        log.append(rows)
        new.append(time.perf_counter() - t1)
        old.append(t1 - t0)
    log.close()
    return {"old_file_per_request_ms": 1000 * statistics.median(old), "stream_append_ms": 1000 * statistics.median(new)}



DAY0 = datetime(2025, 1, 1, tzinfo=UTC)


def day_table(tag: str, day: int, n: int, n_profiles: int, n_titles: int) -> pa.Table:
    rng = np.random.default_rng(day)
    ids = pc.binary_join_element_wise(f"{tag}{day}-", pc.cast(pa.array(np.arange(n)), pa.string()), "")
    ts = (DAY0 + timedelta(days=day)).timestamp() * 1000 + np.arange(n) * (86_400_000 // n)
    cols = {f.name: pa.nulls(n, f.type) for f in EVENT_SCHEMA}
    cols.update(event_id=ids, event_type=pa.array(np.full(n, "play", dtype=object), pa.string()),
                ts=pa.array(ts.astype(np.int64)).cast(EVENT_SCHEMA.field("ts").type),
                profile_id=pa.array(rng.integers(1, n_profiles + 1, n)), title_id=pa.array(rng.integers(1, n_titles + 1, n)),
                fraction_watched=pa.array(np.full(n, 0.5, np.float32)))
    return pa.table(cols, schema=pa.schema([f.with_nullable(True) for f in EVENT_SCHEMA]))


def ingest_scaling(root: Path, sizes: list[int], day_events: int, runs: int) -> dict:
    from features.ingest_nightly import ingest_new
    from features.lake_index import event_files, partition_dir

    n_profiles, n_titles = 100_000, 5_000
    titles = pa.table({"title_id": pa.array(np.arange(1, n_titles + 1)), "artwork_ids": [[0, 1]] * n_titles})
    profiles = pa.table({"profile_id": pa.array(np.arange(1, n_profiles + 1))})
    lake = root / "lake"
    out: dict[int, dict] = {}
    days_built = 0
    for size in sorted(sizes):
        days = max(1, size // day_events)
        for day in range(days_built, days):  # a bigger lake is an older one, at the same daily rate
            path = partition_dir(lake, (DAY0 + timedelta(days=day)).date()) / "part-hist.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(day_table("h", day, day_events, n_profiles, n_titles), path)
        days_built = days
        new = root / "new-day.parquet"
        pq.write_table(day_table("n", days, day_events, n_profiles, n_titles), new)
        now = DAY0 + timedelta(days=days + 1)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            totals = ingest_new([new], titles, profiles, lake, now=now)
            times.append(time.perf_counter() - t0)
            assert totals["accepted"] == day_events, totals
            shutil.rmtree(partition_dir(lake, (DAY0 + timedelta(days=days)).date()))
            for junk in ("batches", "quarantine"):
                shutil.rmtree(lake / junk, ignore_errors=True)
            (lake / "ingest_state.json").unlink()
        t0 = time.perf_counter()
        for f in event_files(lake):  # the old duplicate check read every id in the lake
            pq.read_table(f, columns=["event_id"])
        out[size] = {"ingest_s": statistics.median(times), "old_id_scan_s": time.perf_counter() - t0, "days": days}
    return out
