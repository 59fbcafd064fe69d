"""The interface every top-N model speaks (baselines, ALS/BPR, two-tower, sequence models).

Data: ``Interactions`` holds positive interactions as parallel arrays over *dense* indices
(users 0..n_users-1, items 0..n_items-1), with timestamps so sequence models can order them.
Models: ``fit(train)`` learns (state in attributes ending in ``_``), ``score(users)`` returns a
dense (len(users), n_items) float32 matrix, higher is better; ``recommend`` turns that into top-k
with a user's train items excluded. Randomness comes from the ``seed`` hyperparameter only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Positive interactions. Arrays are parallel, shape (n,). ``weights`` default to 1."""

    users: np.ndarray  # int64 dense user index
    items: np.ndarray  # int64 dense item index
    timestamps: np.ndarray  # int64 seconds since epoch
    n_users: int
    n_items: int
    weights: np.ndarray | None = None  # float32, e.g. fraction watched or rating
    user_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # dense -> original
    item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def subset(self, mask: np.ndarray) -> "Interactions":
        """The rows where ``mask`` (shape (n,)) is True, in the same index space."""
        return replace(
            self,
            users=self.users[mask],
            items=self.items[mask],
            timestamps=self.timestamps[mask],
            weights=None if self.weights is None else self.weights[mask],
        )

    def matrix(self, binary: bool = True) -> sp.csr_matrix:
        """User x item CSR (duplicates summed; binary=True clips values to 1)."""
        w = np.ones(len(self), np.float32) if (binary or self.weights is None) else self.weights
        m = sp.csr_matrix((w, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def sequences(self) -> list[np.ndarray]:
        """Per user, item indices ordered by (timestamp, item): index u -> array."""
        order = np.lexsort((self.items, self.timestamps, self.users))
        users, items = self.users[order], self.items[order]
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]


@runtime_checkable
class Recommender(Protocol):
    name: str

    def fit(self, train: Interactions) -> "Recommender": ...

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 scores for dense user indices."""
        ...


def top_k_excluding(scores: np.ndarray, users: np.ndarray, exclude: sp.csr_matrix | None, k: int) -> np.ndarray:
    """Top-k item indices per row of ``scores`` (len(users), n_items) with ``exclude[users]`` masked.

    Returns (len(users), min(k, n_items)) int64, best first. ``scores`` is modified in place.
    """
    if exclude is not None:
        sub = exclude[users]
        rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
        scores[rows, sub.indices] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recommend(model: Recommender, users: np.ndarray, k: int, exclude: sp.csr_matrix | None) -> np.ndarray:
    """Top-k dense item indices per user, shape (len(users), k), train items excluded."""
    return top_k_excluding(np.asarray(model.score(users), dtype=np.float32).copy(), users, exclude, k)
