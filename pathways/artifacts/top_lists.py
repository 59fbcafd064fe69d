"""Top lists: one ranked list of titles per profile, computed offline (the learning-to-rank top row).

On disk one Parquet file (``profile_id: int64, title_ids: list<int64>, scores: list<float32>``),
one row per profile, best title first, written a block of users per row group. Training writes it;
the pages stage serves it as a row (``candidates/precomputed.py``) and orders other rows by its
scores (``ranking/features.py``), reading it through ``TopListsReader``: an index of the profile
ids (8 bytes a profile) and the few row groups the blocks in flight need, so its memory does not
grow with profiles x candidates (the lists of 1M profiles are ~3 GB as arrays).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
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
        bounds, flat_titles, flat_scores = _flat(table, path)
        return cls({int(p): (flat_titles[a:b], flat_scores[a:b]) for p, a, b in
                    zip(table.column("profile_id").to_pylist(), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)})


def _flat(table: pa.Table, path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row bounds (n + 1,), flat title ids int64, flat scores float32) of the lists in ``table``."""
    titles, scores = (table.column(name).combine_chunks() for name in ("title_ids", "scores"))
    lengths = pc.fill_null(pc.list_value_length(titles), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if not np.array_equal(lengths, pc.fill_null(pc.list_value_length(scores), 0).to_numpy(zero_copy_only=False)):
        raise ValueError(f"{path}: title and score lists differ in length")
    bounds = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=bounds[1:])
    flat_titles = titles.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    flat_scores = scores.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return bounds, flat_titles, flat_scores


class TopListsReader(Mapping[int, tuple[np.ndarray, np.ndarray]]):
    """The lists of a ``TopLists`` file, read one row group at a time: profile id -> (title ids int64,
    scores float32), like ``TopLists.load(path).lists``. Holds the profile ids (sorted, with their
    rows) and at most ``cache_groups`` decoded row groups, least recently used dropped first; the
    pages stage asks for profiles in id order, so the groups of the profiles a sample trained on
    (spread over the id range, a fixed count) stay cached and those folded in are read once.
    Threads may share it (a lock around the cache)."""

    def __init__(self, path: Path | str, cache_groups: int = 128) -> None:
        if cache_groups < 1:
            raise ValueError(f"cache_groups must be >= 1, got {cache_groups}")
        self.path = Path(path)
        self._file = pq.ParquetFile(self.path)
        if not self._file.schema_arrow.equals(SCHEMA):
            raise ValueError(f"{self.path} is not a top lists file: {self._file.schema_arrow}")
        pids = self._file.read(columns=["profile_id"]).column(0).to_numpy()
        self._order = np.argsort(pids, kind="stable")
        self._ids = pids[self._order]
        if len(self._ids) > 1 and (self._ids[1:] == self._ids[:-1]).any():
            raise ValueError(f"{self.path} holds a profile twice")
        sizes = [self._file.metadata.row_group(g).num_rows for g in range(self._file.num_row_groups)]
        self._group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_groups = cache_groups
        self._lock = threading.Lock()

    def _group(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            got = self._cache.get(g)
            if got is not None:
                self._cache.move_to_end(g)
                return got
            table = self._file.read_row_group(g, columns=["title_ids", "scores"])
            got = _flat(table, self.path)
            self._cache[g] = got
            while len(self._cache) > self._cache_groups:
                self._cache.popitem(last=False)
            return got

    def _row(self, profile_id: int) -> int | None:
        i = int(np.searchsorted(self._ids, profile_id))
        return int(self._order[i]) if i < len(self._ids) and self._ids[i] == profile_id else None

    def __getitem__(self, profile_id: int) -> tuple[np.ndarray, np.ndarray]:
        row = self._row(int(profile_id))
        if row is None:
            raise KeyError(profile_id)
        g = int(np.searchsorted(self._group_starts, row, side="right")) - 1
        bounds, titles, scores = self._group(g)
        r = row - int(self._group_starts[g])
        a, b = int(bounds[r]), int(bounds[r + 1])
        return titles[a:b], scores[a:b]

    def many(self, profile_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The lists of ``profile_ids`` (n,) laid end to end: (bounds (n + 1,), title ids int64, scores
        float32); a profile without a list gets an empty one. One sorted search for every id and one
        gather per row group (a block's profiles sit in a few), instead of a search, a lock and two
        slices per profile under the GIL."""
        ids = np.asarray(profile_ids, np.int64).reshape(-1)
        at = np.minimum(np.searchsorted(self._ids, ids), max(len(self._ids) - 1, 0))
        found = (self._ids[at] == ids) if len(self._ids) else np.zeros(len(ids), bool)
        row = self._order[at] if len(self._ids) else np.zeros(len(ids), np.int64)
        group = np.searchsorted(self._group_starts, row, side="right") - 1
        first, lengths = np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
        groups = {g: self._group(g) for g in np.unique(group[found]).tolist()}
        for g, (bounds, _, _) in groups.items():
            mine = np.flatnonzero(found & (group == g))
            r = row[mine] - self._group_starts[g]
            first[mine], lengths[mine] = bounds[r], bounds[r + 1] - bounds[r]
        out = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(lengths, out=out[1:])
        titles, scores = np.empty(out[-1], np.int64), np.empty(out[-1], np.float32)
        for g, (_, group_titles, group_scores) in groups.items():
            mine = np.flatnonzero(found & (group == g))
            dst, src = _spans(out[mine], first[mine], lengths[mine])
            titles[dst], scores[dst] = group_titles[src], group_scores[src]
        return out, titles, scores

    def __contains__(self, profile_id: object) -> bool:
        return isinstance(profile_id, (int, np.integer)) and self._row(int(profile_id)) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __len__(self) -> int:
        return len(self._ids)

    def cached_groups(self) -> int:
        return len(self._cache)


def _spans(at: np.ndarray, first: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(destination, source) indices that copy ``lengths[k]`` items from ``first[k]`` on to ``at[k]``
    on, for every k: (sum(lengths),) each."""
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(at, lengths) + within, np.repeat(first, lengths) + within


def flat_lists(lists: Mapping[int, tuple[np.ndarray, np.ndarray]],
               profile_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``TopListsReader.many`` for any mapping of lists (a ``TopLists.lists`` dict: one look-up per
    profile): (bounds (n + 1,), title ids int64, scores) of ``profile_ids`` (n,), a missing list empty;
    the scores in the lists' dtype (float32 in ``TopLists``; lists of several dtypes would share one)."""
    if isinstance(lists, TopListsReader):
        return lists.many(profile_ids)
    got = [lists.get(int(p)) for p in np.asarray(profile_ids).reshape(-1).tolist()]
    got_lists = [g for g in got if g is not None]
    bounds = np.zeros(len(got) + 1, np.int64)
    np.cumsum(np.fromiter((0 if g is None else len(g[0]) for g in got), np.int64, len(got)), out=bounds[1:])
    if not got_lists:
        return bounds, np.zeros(0, np.int64), np.zeros(0, np.float32)
    titles = np.concatenate([np.asarray(g[0], np.int64).reshape(-1) for g in got_lists])
    scores = np.concatenate([np.asarray(g[1]).reshape(-1) for g in got_lists])
    return bounds, titles, scores
