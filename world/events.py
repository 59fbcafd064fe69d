"""Columnar event parts and their assembly into one ``EVENT_SCHEMA`` table.

The simulator produces events kind by kind as numpy arrays; ``EventParts`` collects them with
sentinels for missing values (-1 for integer columns, NaN for float columns) and ``to_table``
turns them into Arrow in one vectorized pass: sorted by time, with unique string ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import EVENT_SCHEMA, EVENT_TYPES, TS, EventType
from world.vocab import DEVICES

POLICY_VERSION = "uniform-v0"  # the artwork policy of the simulated log: uniform over variants
_INT_COLUMNS = ("title", "row_index", "position", "artwork_id", "query")
_FLOAT_COLUMNS = ("fraction_watched", "position_s", "rating", "propensity")


@dataclass
class EventParts:
    """Events of one block of profiles, collected kind by kind (each argument has shape (n,)).

    ``profile``/``title`` are positions (not ids); ``session`` indexes the block's sessions;
    ``ts_ms`` is milliseconds since the epoch (UTC); ``query`` indexes the query vocabulary.
    """

    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, kind: EventType, ts_ms: np.ndarray, profile: np.ndarray, session: np.ndarray, **cols: np.ndarray) -> None:
        n = len(ts_ms)
        if n == 0:
            return
        unknown = set(cols) - set(_INT_COLUMNS) - set(_FLOAT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown event columns: {sorted(unknown)}")
        values: dict[str, np.ndarray] = {
            "kind": np.full(n, EVENT_TYPES.index(kind.value), dtype=np.int8),
            "ts_ms": np.asarray(ts_ms, dtype=np.int64),
            "profile": np.asarray(profile, dtype=np.int64),
            "session": np.asarray(session, dtype=np.int64),
        }
        for name in _INT_COLUMNS:
            values[name] = np.asarray(cols[name], dtype=np.int64) if name in cols else np.full(n, -1, np.int64)
        for name in _FLOAT_COLUMNS:
            values[name] = np.asarray(cols[name], dtype=np.float32) if name in cols else np.full(n, np.nan, np.float32)
        for name, arr in values.items():
            if arr.shape != (n,):
                raise ValueError(f"event column {name}: expected shape ({n},), got {arr.shape}")
            self.columns.setdefault(name, []).append(arr)

    def __len__(self) -> int:
        return sum(len(a) for a in self.columns.get("kind", []))


@dataclass(frozen=True)
class BlockKeys:
    """How a block's positions map to ids: ``profile_ids`` (P,), ``title_ids`` (T,),
    ``session_device`` (S,) index into ``DEVICES``, ``queries`` the query vocabulary, ``prefix``
    of ids ("w<seed>-b<block>")."""

    profile_ids: np.ndarray
    title_ids: np.ndarray
    session_device: np.ndarray
    queries: tuple[str, ...]
    prefix: str


def to_table(parts: EventParts, keys: BlockKeys, end_ms: int) -> pa.Table:
    """One ``EVENT_SCHEMA`` table of every part with ``ts < end_ms``, sorted by time (ties keep
    the order in which they were added)."""
    if len(parts) == 0:
        return EVENT_SCHEMA.empty_table()
    col = {k: np.concatenate(v) for k, v in parts.columns.items()}
    kept = np.flatnonzero(col["ts_ms"] < end_ms)  # generation order: the id, and the tie-break
    seq = kept[np.argsort(col["ts_ms"][kept], kind="stable")]
    col = {k: v[seq] for k, v in col.items()}

    def ints(values: np.ndarray, source: np.ndarray | None, dtype: pa.DataType) -> pa.Array:
        missing = values < 0
        out = values if source is None else source[np.where(missing, 0, values)]
        return pa.array(out, dtype, mask=missing)

    def floats(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float32(), mask=np.isnan(values))

    def strings(values: np.ndarray, vocab: tuple[str, ...]) -> pa.Array:
        missing = values < 0
        idx = pa.array(np.where(missing, 0, values).astype(np.int32), mask=missing)
        return pa.DictionaryArray.from_arrays(idx, pa.array(vocab, pa.string())).cast(pa.string())

    def ids(prefix: str, numbers: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")

    is_artwork_imp = col["kind"] == EVENT_TYPES.index(EventType.ARTWORK_IMPRESSION.value)
    arrays = {
        "event_id": ids(f"{keys.prefix}-e", seq),
        "event_type": strings(col["kind"].astype(np.int64), EVENT_TYPES),
        "ts": pa.array(col["ts_ms"], TS),
        "profile_id": pa.array(keys.profile_ids[col["profile"]], pa.int64()),
        "title_id": ints(col["title"], keys.title_ids, pa.int64()),
        "session_id": ids(f"{keys.prefix}-s", col["session"]),
        "device": strings(keys.session_device[col["session"]], DEVICES),
        "row_index": ints(col["row_index"], None, pa.int32()),
        "position": ints(col["position"], None, pa.int32()),
        "fraction_watched": floats(col["fraction_watched"]),
        "position_s": floats(col["position_s"]),
        "rating": floats(col["rating"]),
        "query": strings(col["query"], keys.queries),
        "artwork_id": ints(col["artwork_id"], None, pa.int32()),
        "propensity": floats(col["propensity"]),
        "policy_version": strings(np.where(is_artwork_imp, 0, -1), (POLICY_VERSION,)),
    }
    return pa.table(arrays, schema=EVENT_SCHEMA)
