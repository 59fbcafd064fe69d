"""Factor vectors as an artifact: user and item vectors of any factor model (ALS, two-tower, SASRec).

``FactorArtifacts`` is what training produces and candidates, serving and the nightly job load: user
vectors (one row per profile id) and item vectors (one row per title id), plus the model's params.
On disk it is a folder with ``als_factors.npz`` (the four arrays) and ``als.json`` (params); the
file names are kept from when only ALS wrote it, so older runs and snapshots load unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FACTORS = "als_factors.npz"
META = "als.json"


@dataclass(frozen=True)
class FactorArtifacts:
    """Learned factor state. ``user_factors`` (n_users, f) float32 row i = ``profile_ids[i]``;
    ``item_factors`` (n_items, f) float32 row j = ``title_ids[j]``."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    profile_ids: np.ndarray  # int64 (n_users,)
    title_ids: np.ndarray  # int64 (n_items,)
    params: dict[str, float | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        uf = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        itf = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        pids = np.asarray(self.profile_ids, dtype=np.int64)
        tids = np.asarray(self.title_ids, dtype=np.int64)
        if uf.ndim != 2 or itf.ndim != 2 or uf.shape[1] != itf.shape[1]:
            raise ValueError(f"user_factors {uf.shape} and item_factors {itf.shape} must be 2-d with equal width")
        if uf.shape[0] != pids.shape[0]:
            raise ValueError(f"profile_ids has {pids.shape[0]} ids for {uf.shape[0]} user factor rows")
        if itf.shape[0] != tids.shape[0]:
            raise ValueError(f"title_ids has {tids.shape[0]} ids for {itf.shape[0]} item factor rows")
        for name, ids in (("profile_ids", pids), ("title_ids", tids)):
            if np.unique(ids).size != ids.size:
                raise ValueError(f"{name} holds duplicate ids")
        for name, value in (("user_factors", uf), ("item_factors", itf), ("profile_ids", pids), ("title_ids", tids)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_profile_row", {int(p): i for i, p in enumerate(pids)})
        object.__setattr__(self, "_title_row", {int(t): j for j, t in enumerate(tids)})

    @property
    def profile_row(self) -> dict[int, int]:
        """profile id -> row of ``user_factors``."""
        return self._profile_row  # type: ignore[attr-defined,no-any-return]

    @property
    def title_row(self) -> dict[int, int]:
        """title id -> row of ``item_factors``."""
        return self._title_row  # type: ignore[attr-defined,no-any-return]

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    def save(self, path: Path | str) -> Path:
        """Write the folder ``path`` (created if missing); returns it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(
            path / FACTORS,
            user_factors=self.user_factors,
            item_factors=self.item_factors,
            profile_ids=self.profile_ids,
            title_ids=self.title_ids,
        )
        (path / META).write_text(json.dumps({"params": self.params}, indent=2))
        return path

    @classmethod
    def load(cls, path: Path | str) -> FactorArtifacts:
        """The artifact saved in the folder ``path``; FileNotFoundError when there is none."""
        path = Path(path)
        if not (path / FACTORS).is_file():
            raise FileNotFoundError(f"no factor artifact at {path} (expected {FACTORS})")
        with np.load(path / FACTORS) as z:
            arrays = {k: z[k] for k in ("user_factors", "item_factors", "profile_ids", "title_ids")}
        meta = json.loads((path / META).read_text()) if (path / META).is_file() else {}
        return cls(**arrays, params=meta.get("params", {}))
