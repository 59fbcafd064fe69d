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
        """Positions of ``title_ids`` (n,) in the catalog, int64 (n,); -1 for unknown ids."""
        ids = np.asarray(title_ids, dtype=np.int64)
        order = self._sort_order
        if ids.size == 0 or order.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        sorted_ids = self.title_ids[order]
        at = np.minimum(np.searchsorted(sorted_ids, ids), order.size - 1)
        return np.where(sorted_ids[at] == ids, order[at], -1).astype(np.int64)

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
