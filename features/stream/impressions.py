"""The impressions stream's entries: one per served page, expanded into ``artwork_impression`` rows.

Serving logs the artwork it showed on each page whose artwork came from a policy (the titles of
its first rows). It appends ONE entry per page to the ``impressions`` stream (``open_stream(config,
"impressions")``), not one event per title: ``page_entry`` holds the page's arrays (title ids, row
index, position, artwork ids, propensities) beside its request id (the entry's ``event_id``, so a
retried append counts once), profile, policy version and ``ts`` (epoch ms). The codec (orjson)
writes the numpy arrays as JSON lists without a Python object per impression.

The lake consumer of that stream (``features.stream.lake``) turns a batch of entries into the
``EVENT_SCHEMA`` rows file ingest would land, vectorized (``impressions_table``): per title an
``artwork_impression`` with ``event_id = <request id>:<title id>``, the request id as session,
``row_index``, ``position``, ``artwork_id``, ``propensity`` and ``policy_version``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import EVENT_SCHEMA, TS, EventType
from features.stream.base import StreamEntry

PAGE_ARRAYS = ("title_id", "row_index", "position", "artwork_id", "propensity")  # per impression, parallel


def page_entry(
    request_id: str,
    profile_id: int,
    policy_version: str,
    ts: datetime,
    title_ids: np.ndarray,
    row_index: np.ndarray,
    position: np.ndarray,
    artwork_ids: np.ndarray,
    propensities: np.ndarray,
) -> dict[str, Any]:
    """One page's impressions as one stream entry (the arrays stay numpy: the codec writes them as lists)."""
    arrays = (title_ids, row_index, position, artwork_ids, propensities)
    return {
        "event_id": request_id, "profile_id": int(profile_id), "policy_version": policy_version,
        "ts": int(ts.timestamp() * 1000),
        **{name: np.ascontiguousarray(a) for name, a in zip(PAGE_ARRAYS, arrays)},
    }


def page_rows(entry: StreamEntry) -> int:
    """How many impressions (lake rows) ``entry`` holds."""
    return len(entry.event["title_id"])


def _flat(pages: Sequence[Mapping[str, Any]], name: str, dtype: type[np.generic], n: int) -> np.ndarray:
    return np.fromiter(chain.from_iterable(p[name] for p in pages), dtype, count=n)


def impressions_table(pages: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Page entries (as ``page_entry`` made them, or decoded) as ``EVENT_SCHEMA`` columns (all
    nullable), one ``artwork_impression`` row per title, pages in order."""
    nullable = pa.schema([f.with_nullable(True) for f in EVENT_SCHEMA])
    lengths = np.array([len(p["title_id"]) for p in pages], np.int64)
    page_of = pa.array(np.repeat(np.arange(len(pages)), lengths))
    n = int(lengths.sum())

    def per_page(name: str, kind: pa.DataType) -> pa.Array:
        return pa.array([p[name] for p in pages], kind).take(page_of)

    request_ids = per_page("event_id", pa.string())
    title_ids = pa.array(_flat(pages, "title_id", np.int64, n))
    columns: dict[str, pa.Array] = {
        "event_id": pc.binary_join_element_wise(request_ids, pc.cast(title_ids, pa.string()), ":"),
        "event_type": pa.repeat(pa.scalar(EventType.ARTWORK_IMPRESSION.value, pa.string()), n),
        "ts": pc.cast(per_page("ts", pa.int64()), TS),
        "profile_id": per_page("profile_id", pa.int64()),
        "title_id": title_ids,
        "session_id": request_ids,
        "row_index": pa.array(_flat(pages, "row_index", np.int32, n)),
        "position": pa.array(_flat(pages, "position", np.int32, n)),
        "artwork_id": pa.array(_flat(pages, "artwork_id", np.int32, n)),
        "propensity": pa.array(_flat(pages, "propensity", np.float64, n).astype(np.float32)),
        "policy_version": per_page("policy_version", pa.string()),
    }
    return pa.Table.from_arrays(
        [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in nullable], schema=nullable)


def impression_entries_table(entries: Sequence[StreamEntry]) -> pa.Table:
    """``impressions_table`` of stream entries (the lake consumer's view of the impressions stream)."""
    return impressions_table([e.event for e in entries])
