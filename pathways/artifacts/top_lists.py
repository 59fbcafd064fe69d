"""Top lists: one ranked list of titles per profile, computed offline (the learning-to-rank top row).

On disk one Parquet file (``profile_id: int64, title_ids: list<int64>, scores: list<float32>``),
one row per profile, best title first. Training writes it; the pages stage serves it as a row
(``candidates/precomputed.py``) and orders other rows by its scores (``ranking/features.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCHEMA = pa.schema([("profile_id", pa.int64()), ("title_ids", pa.list_(pa.int64())), ("scores", pa.list_(pa.float32()))])


@dataclass(frozen=True)
class TopLists:
    """``lists``: profile id -> (title ids int64 (n,), scores float32 (n,)), best first."""

    lists: dict[int, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def from_arrays(cls, profile_ids: np.ndarray, title_ids: list[np.ndarray], scores: list[np.ndarray]) -> TopLists:
        """Parallel per-profile lists; ``title_ids[i]`` and ``scores[i]`` belong to ``profile_ids[i]``."""
        pids = np.asarray(profile_ids, np.int64)
        if not len(pids) == len(title_ids) == len(scores):
            raise ValueError(f"{len(pids)} profiles, {len(title_ids)} title lists and {len(scores)} score lists must align")
        if np.unique(pids).size != pids.size:
            raise ValueError("profile_ids holds duplicate ids")
        lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for p, t, s in zip(pids, title_ids, scores, strict=True):
            t, s = np.asarray(t, np.int64), np.asarray(s, np.float32)
            if t.shape != s.shape:
                raise ValueError(f"profile {int(p)}: {t.shape} title ids and {s.shape} scores must align")
            lists[int(p)] = (t, s)
        return cls(lists)

    def save(self, path: Path | str) -> Path:
        """Write the Parquet file ``path``; returns it."""
        path = Path(path)
        table = pa.table(
            {
                "profile_id": pa.array(np.fromiter(self.lists, np.int64, len(self.lists))),
                "title_ids": pa.array([t for t, _ in self.lists.values()], pa.list_(pa.int64())),
                "scores": pa.array([s for _, s in self.lists.values()], pa.list_(pa.float32())),
            },
            schema=SCHEMA,
        )
        pq.write_table(table, path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> TopLists:
        """The lists saved in the Parquet file ``path``: each profile's two arrays are views into
        one flat title-id and one flat score array (12 bytes a listed title, no Python object per
        title: reading 300k profiles' lists once took ~5 GB of Python ints and floats on the way)."""
        table = pq.read_table(path, schema=SCHEMA)
        pids = table.column("profile_id").to_numpy()
        titles, scores = (table.column(name).combine_chunks() for name in ("title_ids", "scores"))
        lengths = pc.fill_null(pc.list_value_length(titles), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        if not np.array_equal(lengths, pc.fill_null(pc.list_value_length(scores), 0).to_numpy(zero_copy_only=False)):
            raise ValueError(f"{path}: title and score lists differ in length")
        bounds = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=bounds[1:])
        flat_titles = titles.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        flat_scores = scores.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return cls({int(p): (flat_titles[a:b], flat_scores[a:b])
                    for p, a, b in zip(pids.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)})
