"""The lake's time partitions and the bounded event-id index that checks duplicates against them.

Accepted events live in ``lake_dir/events/date=YYYY-MM-DD/part-<batch id>.parquet`` (one file
per batch and day of ``ts``; files of older lakes directly under ``events/`` are still read).
A retried event keeps its id and its ``ts``, so a duplicate can only sit in the partition of its
own day: ``EventIdIndex`` loads the ids of the days a batch touches (and ``dedupe_days`` before
each), never the whole lake, so checking a day of new events costs the same with a lake of 10M
or 100M events. Loaded days stay cached (one process checking flush after flush) and the index
forgets days ``keep_days`` older than the newest it has seen.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PARTITION_PREFIX = "date="


def partition_dir(lake_dir: Path, day: date) -> Path:
    return lake_dir / "events" / f"{PARTITION_PREFIX}{day.isoformat()}"


def event_days(ts: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The UTC day of each timestamp as ``datetime64[D]`` (NaT for nulls), shape (n,)."""
    days: np.ndarray = pc.cast(ts, pa.timestamp("ms")).to_numpy(zero_copy_only=False).astype("datetime64[D]")
    return days


def write_partitioned(table: pa.Table, lake_dir: Path, batch_id: str) -> list[str]:
    """``table`` (valid ``ts``) split by day into ``events/date=D/part-<batch_id>.parquet``, each
    written to a temporary name, fsynced and renamed (rewriting the same batch is idempotent)."""
    days = event_days(table["ts"])
    paths: list[str] = []
    for day in np.unique(days):
        part = table.filter(pa.array(days == day))
        path = partition_dir(lake_dir, day.astype(object)) / f"part-{batch_id}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pq.write_table(part, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        paths.append(str(path))
    return paths


def event_files(lake_dir: Path) -> list[Path]:
    """Every accepted-events file: old flat parts first, then partitions by day."""
    events = lake_dir / "events"
    flat = sorted(events.glob("part-*.parquet"))
    return flat + sorted(events.glob(f"{PARTITION_PREFIX}*/part-*.parquet"))


class EventIdIndex:
    """Event ids per lake day, loaded on demand (see the module docstring)."""

    def __init__(self, lake_dir: Path | str, dedupe_days: int = 1, keep_days: int = 3) -> None:
        self.lake_dir = Path(lake_dir)
        self.dedupe_days = dedupe_days
        self.keep_days = keep_days
        self._days: dict[date, dict[str, pa.Array]] = {}  # day -> file name -> ids
        self._flat: dict[str, pa.Array] | None = None

    def _load_day(self, day: date) -> dict[str, pa.Array]:
        if day not in self._days:
            files = sorted(partition_dir(self.lake_dir, day).glob("part-*.parquet"))
            self._days[day] = {f.name: pq.read_table(f, columns=["event_id"])["event_id"].combine_chunks() for f in files}
        return self._days[day]

    def _load_flat(self) -> dict[str, pa.Array]:
        if self._flat is None:
            files = sorted((self.lake_dir / "events").glob("part-*.parquet"))
            self._flat = {f.name: pq.read_table(f, columns=["event_id"])["event_id"].combine_chunks() for f in files}
        return self._flat

    def known_ids(self, ts: pa.ChunkedArray | pa.Array, exclude: str = "") -> pa.Array:
        """Ids already in the lake on the days of ``ts`` (and ``dedupe_days`` before), except in
        files named ``exclude`` (the batch being rewritten)."""
        days = {d.astype(object) for d in np.unique(event_days(ts)) if not np.isnat(d)}
        wanted = {d - timedelta(days=k) for d in days for k in range(self.dedupe_days + 1)}
        chunks = [ids for name, ids in self._load_flat().items() if name != exclude]
        for day in sorted(wanted):
            chunks += [ids for name, ids in self._load_day(day).items() if name != exclude]
        self._forget_old(max(days) if days else None)
        if not chunks:
            return pa.array([], pa.string())
        return pa.chunked_array(chunks, pa.string()).combine_chunks()

    def add(self, table: pa.Table, file_name: str) -> None:
        """Record the ids of ``table`` (just written as ``file_name`` in each of its days)."""
        days = event_days(table["ts"])
        for day in np.unique(days):
            ids = table["event_id"].filter(pa.array(days == day)).combine_chunks()
            self._load_day(day.astype(object))[file_name] = ids

    def _forget_old(self, newest: date | None) -> None:
        if newest is None:
            return
        horizon = newest - timedelta(days=self.keep_days + self.dedupe_days)
        for day in [d for d in self._days if d < horizon]:
            del self._days[day]
