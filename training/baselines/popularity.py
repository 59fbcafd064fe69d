"""Most popular: every user gets the items with the most distinct train users."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.recommender import Interactions


class Popularity:
    """score(u, i) = number of train users of item i (ties broken by item index in ``recommend``)."""

    name = "pop"

    def __init__(self) -> None:
        pass

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        return {}

    def get_params(self) -> dict[str, Any]:
        return {}

    def fit(self, train: Interactions) -> "Popularity":
        counts = np.asarray(train.matrix(binary=True).sum(axis=0)).ravel()
        self.counts_ = counts.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32, the same row for everyone."""
        return np.broadcast_to(self.counts_, (len(users), len(self.counts_))).copy()
