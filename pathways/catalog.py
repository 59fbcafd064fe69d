"""The catalog as arrays: fast lookups of a title's name, maturity, licence regions and artwork."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Catalog:
    """Titles in columnar form. ``licensed[r]`` is a bool mask over ``title_ids`` for region r."""

    title_ids: np.ndarray  # int64 (n,)
    names: tuple[str, ...]
    maturity: np.ndarray  # int8 (n,)
    release_days: np.ndarray  # int32 (n,) days since epoch
    genres: tuple[tuple[str, ...], ...]
    licensed: dict[str, np.ndarray]  # region -> bool (n,)
    artwork_ids: tuple[tuple[int, ...], ...]
    artwork_themes: tuple[tuple[str, ...], ...]
    index: dict[int, int]  # title_id -> position

    @classmethod
    def from_table(cls, titles: pa.Table) -> Catalog:
        ids = np.asarray(titles.column("title_id").to_numpy(), dtype=np.int64)
        regions_per_title = titles.column("regions").to_pylist()
        all_regions = sorted({r for rs in regions_per_title for r in rs})
        licensed = {r: np.array([r in rs for rs in regions_per_title], dtype=bool) for r in all_regions}
        release = titles.column("release_date").cast(pa.int32()).to_numpy()
        return cls(
            title_ids=ids,
            names=tuple(titles.column("name").to_pylist()),
            maturity=np.asarray(titles.column("maturity_level").to_numpy(), dtype=np.int8),
            release_days=np.asarray(release, dtype=np.int32),
            genres=tuple(tuple(g) for g in titles.column("genres").to_pylist()),
            licensed=licensed,
            artwork_ids=tuple(tuple(a) for a in titles.column("artwork_ids").to_pylist()),
            artwork_themes=tuple(tuple(a) for a in titles.column("artwork_themes").to_pylist()),
            index={int(t): i for i, t in enumerate(ids)},
        )

    def __len__(self) -> int:
        return int(self.title_ids.shape[0])

    def positions(self, title_ids: np.ndarray) -> np.ndarray:
        """Positions of ``title_ids`` (n,) in the catalog, int64 (n,); -1 for unknown ids. One gather
        from a dense id -> position table when the catalog's ids are small non-negative integers (the
        table has at most 4 x the catalog's size + 1M entries), else a binary search of the sorted ids."""
        ids = np.asarray(title_ids, dtype=np.int64)
        if ids.size == 0 or len(self) == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        table = self._dense_table
        if table is not None:
            inside = (ids >= 0) & (ids < len(table))
            if inside.all():
                found: np.ndarray = table[ids]
                return found
            return np.where(inside, table[np.where(inside, ids, 0)], -1)
        order = self._sort_order
        sorted_ids = self.title_ids[order]
        at = np.minimum(np.searchsorted(sorted_ids, ids), order.size - 1)
        return np.where(sorted_ids[at] == ids, order[at], -1).astype(np.int64)

    @property
    def _dense_table(self) -> np.ndarray | None:
        """id -> position (-1: not in the catalog) over [0, largest id]; None when an id is negative
        or the ids are sparse (cached)."""
        if "_dense" not in self.__dict__:
            ids = self.title_ids
            table = None
            if ids.min() >= 0 and ids.max() < 4 * len(ids) + 1_000_000:
                table = np.full(int(ids.max()) + 1, -1, np.int64)
                table[ids[::-1]] = np.arange(len(ids) - 1, -1, -1)  # a repeated id keeps its first position
            object.__setattr__(self, "_dense", table)
        cached: np.ndarray | None = self.__dict__["_dense"]
        return cached

    @property
    def _sort_order(self) -> np.ndarray:
        cached = self.__dict__.get("_order")
        if cached is None:
            cached = np.argsort(self.title_ids, kind="stable")
            object.__setattr__(self, "_order", cached)
        return cached

    def name(self, title_id: int) -> str:
        return self.names[self.index[int(title_id)]]

    def licensed_mask(self, region: str) -> np.ndarray:
        mask = self.licensed.get(region)
        return mask if mask is not None else np.zeros(len(self), dtype=bool)
