"""Bad rows for ingestion tests: ``corrupt_events`` mixes rejectable rows into a clean event log.

It says how many rows of each kind it added.

Each bad row is a copy of a clean row with exactly one thing broken, so it fails exactly one rule;
the kinds are named after the reasons ``features.ingest`` reports. Every row still has
``EVENT_SCHEMA`` (the breakage is in the values, not the types).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import EVENT_SCHEMA, TS, EventType

# kind -> the event types a source row may have (None: any row with a title).
KINDS: dict[str, tuple[str, ...] | None] = {
    "unknown_profile_id": None,
    "unknown_title_id": None,
    "duplicate_event_id": None,
    "ts_too_early": None,  # a timestamp in 1970
    "ts_in_future": None,  # a timestamp in 2100
    "negative_position": (EventType.IMPRESSION.value,),
    "fraction_out_of_range": (EventType.PLAY.value,),
    "rating_out_of_range": (EventType.RATING.value,),  # a rating of 7
    "unknown_event_type": None,  # "bogus"
    "missing_title_id": (EventType.PLAY.value,),  # a play without a title
    "unknown_artwork_id": (EventType.ARTWORK_IMPRESSION.value,),  # a variant the title lacks
}


class Corrupted(NamedTuple):
    """The mixed log (clean rows keep their order) and how many bad rows of each kind it holds."""

    events: pa.Table
    counts: dict[str, int]


def corrupt_events(events: pa.Table, fraction: float, seed: int, profiles: pa.Table, titles: pa.Table) -> Corrupted:
    """Add ``round(fraction * len(events))`` bad rows, spread evenly over ``KINDS``, at random places."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if events.schema.remove_metadata() != EVENT_SCHEMA.remove_metadata():
        raise ValueError("events must have EVENT_SCHEMA")
    n_bad = int(round(fraction * events.num_rows))
    if fraction > 0 and events.num_rows == 0:
        raise ValueError("events is empty: there are no rows to corrupt")
    rng = np.random.default_rng(seed)
    kinds = list(KINDS)
    per_kind = np.bincount(rng.permutation(np.arange(n_bad) % len(kinds)), minlength=len(kinds)) if n_bad else np.zeros(len(kinds), int)
    etype = np.asarray(events.column("event_type").to_numpy(zero_copy_only=False), dtype=object)
    titled = np.asarray(events.column("title_id").is_valid())
    bad_parts: list[pa.Table] = []
    counts: dict[str, int] = {}
    serial = 0
    for kind, n in zip(kinds, per_kind.tolist()):
        counts[kind] = n
        if n == 0:
            continue
        wanted = KINDS[kind]
        pool = np.flatnonzero(titled & np.isin(etype, wanted)) if wanted else np.flatnonzero(titled)
        converted = wanted is not None and len(pool) == 0
        if len(pool) == 0:  # no row of that type: convert titled rows (or any row) instead
            pool = np.flatnonzero(titled) if titled.any() else np.arange(events.num_rows)
        rows = events.take(rng.choice(pool, size=n, replace=n > len(pool)))
        if converted and wanted:
            rows = _set(rows, "event_type", pa.array([wanted[0]] * n, pa.string()))
        if kind != "duplicate_event_id":
            rows = _set(rows, "event_id", pa.array([f"corrupt-{seed}-{serial + i}" for i in range(n)], pa.string()))
        serial += n
        bad_parts.append(_break(kind, rows, profiles, titles))
    if not bad_parts:
        return Corrupted(events, counts)
    bad = pa.concat_tables(bad_parts)
    # Interleave: clean rows keep their order; bad rows land at random places among them.
    key = np.r_[np.arange(events.num_rows, dtype=np.float64), rng.uniform(-0.5, events.num_rows, bad.num_rows)]
    mixed = pa.concat_tables([events, bad]).take(np.argsort(key, kind="stable"))
    return Corrupted(mixed, counts)


def _break(kind: str, rows: pa.Table, profiles: pa.Table, titles: pa.Table) -> pa.Table:
    """``rows`` with the one field of ``kind`` broken."""
    n = rows.num_rows
    if kind == "unknown_profile_id":
        top = int(pc.max(profiles.column("profile_id")).as_py() or 0)
        return _set(rows, "profile_id", pa.array(np.arange(top + 1, top + 1 + n), pa.int64()))
    if kind == "unknown_title_id":
        top = int(pc.max(titles.column("title_id")).as_py() or 0)
        return _set(rows, "title_id", pa.array(np.arange(top + 1000, top + 1000 + n), pa.int64()))
    if kind == "ts_too_early":
        return _set(rows, "ts", _ts(datetime(1970, 1, 1, 12, tzinfo=UTC), n))
    if kind == "ts_in_future":
        return _set(rows, "ts", _ts(datetime(2100, 1, 1, tzinfo=UTC), n))
    if kind == "negative_position":
        rows = _set(rows, "row_index", pc.fill_null(rows.column("row_index"), 0))
        return _set(rows, "position", pa.array(-1 - np.arange(n) % 5, pa.int32()))
    if kind == "fraction_out_of_range":
        return _set(rows, "fraction_watched", pa.array(np.full(n, 1.5), pa.float32()))
    if kind == "rating_out_of_range":
        return _set(rows, "rating", pa.array(np.full(n, 7.0), pa.float32()))
    if kind == "unknown_event_type":
        return _set(rows, "event_type", pa.array(["bogus"] * n, pa.string()))
    if kind == "missing_title_id":
        return _set(rows, "title_id", pa.nulls(n, pa.int64()))
    if kind == "unknown_artwork_id":
        index = dict(zip(titles.column("title_id").to_pylist(), titles.column("artwork_ids").to_pylist()))
        n_arms = [len(index.get(t, [])) for t in rows.column("title_id").to_pylist()]
        rows = _set(rows, "propensity", pc.fill_null(rows.column("propensity"), pa.scalar(1.0, pa.float32())))
        return _set(rows, "artwork_id", pa.array(n_arms, pa.int32()))
    if kind == "duplicate_event_id":
        return rows
    raise ValueError(f"unknown corruption kind {kind!r}")


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), values)


def _ts(at: datetime, n: int) -> pa.Array:
    base = int(at.timestamp() * 1000)
    return pa.array(base + np.arange(n, dtype=np.int64) * 60_000, TS)
