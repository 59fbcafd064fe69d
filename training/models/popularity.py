"""Most popular: every user gets the same list, the items with the most train users (or interactions)."""

from __future__ import annotations

import copy
from typing import Self

import numpy as np

from pathways.models_config import PopularityConfig
from training.models.base import ConfiguredModel
from training.recommender import Interactions, same_catalog


class Popularity(ConfiguredModel):
    """score(u, i) = count_i, or log(1 + count_i) with ``log1p`` (ties broken by item index in ``recommend``).

    ``count="users"``: distinct train users of item i; ``"interactions"``: train rows of item i.
    """

    name = "popularity"
    section = PopularityConfig
    config: PopularityConfig

    def fit(self, train: Interactions, *, valid: Interactions | None = None,
            item_features: np.ndarray | None = None) -> Self:
        if self.config.count == "users":
            counts = np.asarray(train.matrix(binary=True).sum(axis=0)).ravel().astype(np.float32)
        else:
            counts = np.bincount(train.items, minlength=train.n_items).astype(np.float32)
        self.counts_ = np.log1p(counts) if self.config.log1p else counts
        return self

    def fold_in(self, data: Interactions) -> Self:
        """A copy for ``data``'s users (``FoldIn``): the same fitted counts for everyone."""
        same_catalog(data, len(self.counts_))
        return copy.copy(self)

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32, the same row for everyone."""
        return np.broadcast_to(self.counts_, (len(users), len(self.counts_))).copy()
