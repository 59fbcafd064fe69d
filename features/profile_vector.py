"""The profile features read online, packed into one vector per profile: ``profile_online``'s one
feature, ``profile_vector``.

Feast's SQLite online store writes one row per feature per entity and its online read parses each
value alone, under the GIL: the ranker and the artwork policy read 8 features of every profile, so
the nightly's online write and the pages stage's reads cost 8 rows a profile. Packed they cost one.
The vector is ``SCALARS`` as float32, NaN where null (exact: the counts lie far below 2**24, the
flag and the level are small, the rates are float32 already, and the ranker reads them all as
float32), then ``genre_affinity``'s entries (none where it is null; order: ``genres.json``).
Offline, ``profile_stats`` keeps the same features one column each for point-in-time reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

VECTOR = "profile_vector"
SCALARS = ("plays_28d", "impressions_28d", "play_through_rate_28d", "mean_fraction_watched_28d",
           "days_since_last_play", "is_kids", "max_maturity_level")
FIELDS = (*SCALARS, "genre_affinity")
_INTS = frozenset({"plays_28d", "impressions_28d", "max_maturity_level"})
_BOOLS = frozenset({"is_kids"})


def pack(table: pa.Table) -> pa.ListArray:
    """Each row's vector (list<float32>) from a profile_stats table's columns ``FIELDS``."""
    n, k = table.num_rows, len(SCALARS)
    scalars = np.empty((n, k), np.float32)
    for j, name in enumerate(SCALARS):
        column = pc.cast(table[name], pa.float32())
        scalars[:, j] = column.to_numpy(zero_copy_only=False)  # nulls come as NaN
    affinity = table["genre_affinity"].combine_chunks()
    genre_len = pc.fill_null(pc.list_value_length(affinity), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    genres = pc.cast(pc.list_flatten(affinity), pa.float32()).to_numpy(zero_copy_only=False)
    lengths = k + genre_len
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("a profile feature table too large for one list array: append it in parts")
    values = np.empty(int(offsets[-1]), np.float32)
    scalar_at = np.zeros(len(values), bool)
    scalar_at[(offsets[:-1, None] + np.arange(k)).ravel()] = True
    values[scalar_at] = scalars.ravel()
    values[~scalar_at] = genres  # the rest, in order: each row's genre entries after its scalars
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def with_vector(table: pa.Table) -> pa.Table:
    """``table`` with its ``VECTOR`` column (replaced if there is one)."""
    if VECTOR in table.column_names:
        table = table.drop_columns([VECTOR])
    return table.append_column(VECTOR, pack(table))


def unpack_frame(vectors: Sequence[Sequence[float] | None], names: Sequence[str] = FIELDS) -> pd.DataFrame:
    """The features ``names`` of each vector (None: a profile never materialized), one row each:
    scalars as float64 (NaN where null or unknown), ``genre_affinity`` as a float32 array or None."""
    unknown = sorted(set(names) - set(FIELDS))
    if unknown:
        raise ValueError(f"not in the online profile vector: {unknown}; it holds {list(FIELDS)}")
    k, n = len(SCALARS), len(vectors)
    scalars = np.full((n, k), np.nan)
    affinity: list[np.ndarray | None] = [None] * n
    for i, v in enumerate(vectors):
        if v is None or not len(v):
            continue
        row = np.asarray(v, np.float32)
        scalars[i] = row[:k]
        if len(row) > k:
            affinity[i] = row[k:]
    columns: dict[str, Any] = {}
    for name in names:
        columns[name] = affinity if name == "genre_affinity" else scalars[:, SCALARS.index(name)]
    return pd.DataFrame(columns, index=range(n))


def unpack_row(vector: Sequence[float] | None) -> dict[str, Any]:
    """One vector as Python values per feature (None where null or never materialized): counts and
    the level as int, ``is_kids`` as bool, rates as float, ``genre_affinity`` as a list."""
    if vector is None or not len(vector):
        return dict.fromkeys(FIELDS)
    row = np.asarray(vector, np.float32)
    out: dict[str, Any] = {}
    for j, name in enumerate(SCALARS):
        x = float(row[j])
        out[name] = None if np.isnan(x) else int(x) if name in _INTS else bool(x) if name in _BOOLS else x
    out["genre_affinity"] = row[len(SCALARS):].tolist() if len(row) > len(SCALARS) else None
    return out
