"""The lake's time partitions and the bounded event-id index that checks duplicates against them.

Accepted events live in ``lake_dir/events/date=YYYY-MM-DD/part-<batch id>.parquet`` (one file
per batch and day of ``ts``; files of older lakes directly under ``events/`` are still read).
A retried event keeps its id and its ``ts``, so a duplicate can only sit in the partition of its
own day: ``EventIdIndex`` loads the ids of the days a batch touches (and ``dedupe_days`` before
each), never the whole lake, so checking a day of new events costs the same with a lake of 10M
or 100M events. Each file's ids are held as sorted 64-bit hashes with their row numbers (12
bytes an id, a third of the strings'), a hash match confirmed against the id read back from its
file, so the check stays exact. Loaded days stay cached (one process checking flush after flush)
and the index forgets days ``keep_days`` older than the newest it has seen (never one the batch
being checked needs: a week-long file holds 8 days of ids, ~2 GB for 1M profiles). Each day's hashes are
also held merged into one sorted array, so a batch is searched once per day whatever the number
of files there (a big file landed in chunks writes a file per chunk and day: searching file by
file made its ingest quadratic, ~10 minutes for a 300k-profile world's 31M events).
Cost: time linear in the ids of the days checked (hashing, sorting, merging) and in the new ids
(binary search); memory 20 bytes per known id of those days.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PARTITION_PREFIX = "date="


def partition_dir(lake_dir: Path, day: date) -> Path:
    return lake_dir / "events" / f"{PARTITION_PREFIX}{day.isoformat()}"


def part_name(batch_id: str) -> str:
    """The file name of batch ``batch_id`` in each of its day partitions (and the quarantine)."""
    return f"part-{batch_id}.parquet"


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
        path = partition_dir(lake_dir, day.astype(object)) / part_name(batch_id)
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


def id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of event ids, shape (n,) uint64: DuckDB's ``hash`` over the Arrow strings (no
    Python string per id: 0.065 s against pandas' SipHash's 0.63-0.85 s for 2.2M ids, measured).
    Only ever compared within one process (the lake index is rebuilt from the files, never stored),
    so they need not match another version's."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if not len(ids):
        return np.zeros(0, np.uint64)
    con = getattr(_DUCKDB, "con", None)
    if con is None:  # one connection per thread (36 ms to open one), one core each
        import duckdb

        con = _DUCKDB.con = duckdb.connect(config={"threads": 1})
    con.register("ids", pa.table({"id": ids}))
    try:
        hashes: np.ndarray = con.sql("SELECT hash(id) AS h FROM ids").to_arrow_table()["h"].to_numpy()
    finally:
        con.unregister("ids")
    if len(hashes) != len(ids):
        raise RuntimeError(f"duckdb hashed {len(hashes)} of {len(ids)} event ids")
    return hashes.astype(np.uint64, copy=False)


_DUCKDB = threading.local()


@dataclass(frozen=True)
class _FileIds:
    """One lake file's event ids as sorted 64-bit hashes with their row numbers (12 bytes an id
    instead of the string's ~40); the file is re-read only to compare the full ids of hash matches."""

    path: Path
    hashes: np.ndarray  # uint64, sorted
    rows: np.ndarray  # uint32, the file row of each hash
    ids: pa.Array | None = None  # the file's ids while it is being written (compared from memory)

    @classmethod
    def of(cls, path: Path, ids: pa.Array | pa.ChunkedArray, hashes: np.ndarray | None = None,
           in_memory: bool = False) -> _FileIds:
        """``hashes``: ``id_hashes(ids)`` when the caller has them already; ``in_memory``: keep
        ``ids`` (the file is not written yet)."""
        hashes = id_hashes(ids) if hashes is None else hashes
        order = np.argsort(hashes, kind="stable")
        held = (ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids) if in_memory else None
        return cls(path, hashes[order], order.astype(np.uint32), held)

    def stored_ids(self) -> pa.Array:
        """The file's ids in row order (from memory while it is being written)."""
        if self.ids is not None:
            return self.ids
        return pq.read_table(self.path, columns=["event_id"])["event_id"].combine_chunks()

    @classmethod
    def read(cls, path: Path) -> _FileIds:
        return cls.of(path, pq.read_table(path, columns=["event_id"])["event_id"])

    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.rows.nbytes)


class EventIdIndex:
    """Event ids per lake day, loaded on demand (see the module docstring), kept as sorted 64-bit
    hashes per file. ``duplicates`` is exact: a hash match is confirmed by comparing the full id
    read back from its file, so two distinct ids whose hashes collide (about n*m/2**64 pairs for n
    known and m new ids: ~1e-5 for 1e8 x 2e6) are never taken for duplicates. Memory: 20 bytes
    per known id of the days checked (~0.6 GB for 28M ids: the per-file hashes and rows, and each
    day's merged hashes), plus one file's ids while confirming."""

    def __init__(self, lake_dir: Path | str, dedupe_days: int = 1, keep_days: int = 3) -> None:
        self.lake_dir = Path(lake_dir)
        self.dedupe_days = dedupe_days
        self.keep_days = keep_days
        self._days: dict[date, dict[str, _FileIds]] = {}  # day -> file name -> its ids
        self._flat: dict[str, _FileIds] | None = None
        self._merged: dict[date | None, np.ndarray] = {}  # day (None: the flat files) -> all its files' hashes, sorted

    def _load_day(self, day: date) -> dict[str, _FileIds]:
        if day not in self._days:
            files = sorted(partition_dir(self.lake_dir, day).glob("part-*.parquet"))
            self._days[day] = {f.name: _FileIds.read(f) for f in files}
        return self._days[day]

    def _load_flat(self) -> dict[str, _FileIds]:
        if self._flat is None:
            files = sorted((self.lake_dir / "events").glob("part-*.parquet"))
            self._flat = {f.name: _FileIds.read(f) for f in files}
        return self._flat

    def _hashes_of(self, day: date | None) -> np.ndarray:
        """Every hash of the files of ``day`` (None: the flat files) as one sorted array, kept up to
        date by ``add`` (a merge of two sorted runs), so a batch is searched once per day, not once
        per file: checking chunk after chunk of one night stays linear in its events."""
        if day not in self._merged:
            files = self._load_flat() if day is None else self._load_day(day)
            merged = np.concatenate([np.zeros(0, np.uint64), *(f.hashes for f in files.values())])
            merged.sort(kind="stable")
            self._merged[day] = merged
        return self._merged[day]

    def duplicates(self, event_ids: pa.Array | pa.ChunkedArray, ts: pa.ChunkedArray | pa.Array,
                   exclude: str = "", hashes: np.ndarray | None = None) -> np.ndarray:
        """Whether each id is already in the lake on the days of ``ts`` (and ``dedupe_days``
        before), except in files named ``exclude`` (the batch being rewritten); shape (n,) bool.
        ``hashes``: ``id_hashes(event_ids)`` when the caller has them already (ingest: one hashing
        of a batch for this check, the duplicates within it and ``add``).

        First each day's merged hashes pick the ids whose hash is there at all (an id is looked up
        only in the days its own day may repeat: that day and ``dedupe_days`` before); only those
        (true duplicates, a rare collision, or a rewritten batch's own ids) are confirmed file by
        file against the full ids."""
        own = event_days(ts)
        days = {d.astype(object) for d in np.unique(own) if not np.isnat(d)}
        wanted = {d - timedelta(days=k) for d in days for k in range(self.dedupe_days + 1)}
        self._forget_old(max(days) if days else None, keep=wanted)
        ids = event_ids.combine_chunks() if isinstance(event_ids, pa.ChunkedArray) else event_ids
        found = np.zeros(len(ids), bool)
        if not len(ids):
            return found
        hashes = id_hashes(ids) if hashes is None else hashes
        order = np.argsort(hashes)  # sorted needles: a cache-friendly binary search
        ordered = hashes[order]
        maybe = np.zeros(len(ids), bool)
        own_ordered = own[order]
        undated = np.isnat(own_ordered)
        for day in [None, *sorted(wanted)]:
            known = self._hashes_of(day)
            if not len(known):
                continue
            if day is None:
                lines = np.arange(len(ordered))
            else:  # only ids whose day is this one or up to dedupe_days later (a batch spanning a week:
                # each id searched in 2 days' hashes, not 8, at dedupe_days 1), still in hash order
                gap = (own_ordered - np.datetime64(day, "D")).astype(np.int64)
                lines = np.flatnonzero(undated | ((gap >= 0) & (gap <= self.dedupe_days)))
            needles = ordered[lines]
            at = np.searchsorted(known, needles)
            maybe[order[lines[known[np.minimum(at, len(known) - 1)] == needles]]] = True
        which = np.flatnonzero(maybe)
        if not len(which):
            return found
        files = [f for name, f in self._load_flat().items() if name != exclude]
        for day in sorted(wanted):
            files += [f for name, f in self._load_day(day).items() if name != exclude]
        found[which] = self._confirm(ids.take(pa.array(which)), hashes[which], files)
        return found

    @staticmethod
    def _confirm(ids: pa.Array, hashes: np.ndarray, files: list[_FileIds]) -> np.ndarray:
        """Whether each of ``ids`` (with their ``hashes``) is in one of ``files``: hash matches are
        compared with the full ids, one candidate row of the file at a time."""
        found = np.zeros(len(ids), bool)
        for known in files:
            lo = np.searchsorted(known.hashes, hashes, side="left")
            hi = np.searchsorted(known.hashes, hashes, side="right")
            new = np.flatnonzero((hi > lo) & ~found)
            if not len(new):
                continue
            # Hash matches (true duplicates, or a rare collision): compare the full ids, one
            # candidate row of the file at a time (equal hashes within a file are rarer still).
            stored = known.stored_ids()
            mine = ids.take(pa.array(new))
            for k in range(int((hi[new] - lo[new]).max())):
                open_ = (lo[new] + k < hi[new]) & ~found[new]
                rows = known.rows[np.minimum(lo[new] + k, len(known.rows) - 1)].astype(np.int64)
                same = pc.fill_null(pc.equal(mine, stored.take(pa.array(rows))), False).to_numpy(zero_copy_only=False)
                found[new[open_ & same]] = True
        return found

    def add(self, table: pa.Table, file_name: str, hashes: np.ndarray | None = None, in_memory: bool = False) -> None:
        """Record the ids of ``table`` (just written as ``file_name`` in each of its days);
        ``hashes``: their ``id_hashes`` when the caller has them already; ``in_memory``: the files
        are being written: their ids are kept to confirm matches until ``written(file_name)``."""
        days = event_days(table["ts"])
        for day in np.unique(days):
            key = day.astype(object)
            on_day = days == day
            ids = table["event_id"].filter(pa.array(on_day)).combine_chunks()
            files = self._load_day(key)
            replaced = files.get(file_name)
            files[file_name] = _FileIds.of(partition_dir(self.lake_dir, key) / file_name, ids,
                                           None if hashes is None else hashes[on_day], in_memory)
            if replaced is not None:  # a batch rewritten: rebuild the day's merged hashes
                self._merged.pop(key, None)
            elif key in self._merged:  # two sorted runs merged (timsort: linear)
                merged = np.concatenate([self._merged[key], files[file_name].hashes])
                merged.sort(kind="stable")
                self._merged[key] = merged

    def written(self, file_name: str) -> None:
        """The files ``file_name`` added ``in_memory`` exist now: their ids leave memory."""
        for files in self._days.values():
            known = files.get(file_name)
            if known is not None and known.ids is not None:
                files[file_name] = dataclasses.replace(known, ids=None)

    def nbytes(self) -> int:
        """Bytes held for the known ids."""
        return (sum(f.nbytes() for files in [*self._days.values(), self._flat or {}] for f in files.values())
                + sum(m.nbytes for m in self._merged.values()))

    def _forget_old(self, newest: date | None, keep: set[date] | frozenset[date] = frozenset()) -> None:
        """Drop days ``keep_days`` (+ ``dedupe_days``) older than ``newest``, except those of ``keep``
        (the days the batch being checked needs: a batch spanning a week must not evict, and read
        back, its own first days on every chunk)."""
        if newest is None:
            return
        horizon = newest - timedelta(days=self.keep_days + self.dedupe_days)
        for day in [d for d in self._days if d < horizon and d not in keep
                    and all(f.ids is None for f in self._days[d].values())]:  # never a file being written
            del self._days[day]
            self._merged.pop(day, None)
