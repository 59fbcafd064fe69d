"""Light candidate generators used inside the final model: popularity, item-kNN, EASE, ALS.

Each implements ``Recommender`` (``fit(train)``, ``score(users)`` -> (n, n_items) float32).
They are deliberately default-configured (no per-data-set tuning): the ranker learns how much to
trust each one. ``ItemKNN`` can weight a user's history by recency (half-life in items), which
turns it into a cheap sequence-aware generator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.recommender import Interactions


class Popularity:
    """Score = log(1 + number of train interactions of the item); same list for everyone."""

    name = "popularity"

    def fit(self, train: Interactions) -> "Popularity":
        self.counts_ = np.bincount(train.items, minlength=train.n_items).astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.log1p(self.counts_), (len(users), len(self.counts_))).copy()


def _recency_weights(train: Interactions, half_life: float | None) -> sp.csr_matrix:
    """User x item CSR whose entry is 0.5 ** (position from the end of the user's sequence / half_life)."""
    if half_life is None:
        return train.matrix(binary=True)
    order = np.lexsort((train.items, train.timestamps, train.users))
    users, items = train.users[order], train.items[order]
    counts = np.bincount(users, minlength=train.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    from_end = counts[users] - (np.arange(len(users)) - starts[users]) - 1
    w = np.power(0.5, from_end / half_life).astype(np.float32)
    m = sp.csr_matrix((w, (users, items)), shape=(train.n_users, train.n_items))
    m.sum_duplicates()
    return m


@dataclass
class ItemKNN:
    """Cosine item-item neighbours (top ``neighbors`` per item) over binary interactions."""

    neighbors: int = 100
    shrink: float = 10.0
    recency_half_life: float | None = None  # in items; None = all history weighs 1
    name: str = "item_knn"

    def fit(self, train: Interactions) -> "ItemKNN":
        start = time.perf_counter()
        x = train.matrix(binary=True).tocsc()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        sim = (x.T @ x).tocsr().astype(np.float32)
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
        sim.data /= norms[rows] * norms[sim.indices] + self.shrink
        self.similarity_ = _top_per_row(sim, self.neighbors).T.tocsr()  # column j: neighbours of j
        self.history_ = _recency_weights(train, self.recency_half_life)
        self.train_seconds_ = time.perf_counter() - start
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.history_[users] @ self.similarity_).todense(), dtype=np.float32)


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    m = m.tocsr()
    keep = np.zeros(m.nnz, dtype=bool)
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
        else:
            keep[lo + np.argpartition(-m.data[lo:hi], k - 1)[:k]] = True
    out = m.copy()
    out.data = np.where(keep, out.data, 0.0).astype(np.float32)
    out.eliminate_zeros()
    return out


@dataclass
class EASE:
    """Steck's EASE: closed-form item-item weights B = I - P / diag(P), P = (X'X + lambda I)^-1.

    Only items with at least ``min_count`` train interactions take part (others score 0), which
    bounds the dense (n, n) inverse on long-tail catalogs.
    """

    l2: float = 500.0
    min_count: int = 2
    max_items: int = 20_000
    name: str = "ease"

    def fit(self, train: Interactions) -> "EASE":
        start = time.perf_counter()
        x = train.matrix(binary=True)
        counts = np.asarray(x.sum(axis=0)).ravel()
        active = np.flatnonzero(counts >= self.min_count)
        if len(active) > self.max_items:
            active = np.sort(active[np.argsort(-counts[active], kind="stable")[: self.max_items]])
        xa = x[:, active]
        with threadpool_limits(1, "blas"):
            gram = (xa.T @ xa).toarray().astype(np.float64)
            gram[np.diag_indices_from(gram)] += self.l2
            p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.active_, self.weights_, self.history_ = active, b.astype(np.float32), xa.tocsr()
        self.n_items_ = train.n_items
        self.train_seconds_ = time.perf_counter() - start
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.n_items_), dtype=np.float32)
        out[:, self.active_] = self.history_[users] @ self.weights_
        return out


@dataclass
class ALS:
    """implicit's ALS on binary interactions with confidence 1 + alpha (Hu, Koren & Volinsky)."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    seed: int = 0
    name: str = "als"

    def fit(self, train: Interactions) -> "ALS":
        from implicit.cpu.als import AlternatingLeastSquares

        start = time.perf_counter()
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=1,
                calculate_training_loss=False,
            )
            model.fit(train.matrix(binary=True), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, np.float32)
        self.item_factors_ = np.asarray(model.item_factors, np.float32)
        self.train_seconds_ = time.perf_counter() - start
        return self

    def user_embeddings(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[np.asarray(users, np.int64)]

    def item_embeddings(self) -> np.ndarray:
        return self.item_factors_

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_embeddings(users) @ self.item_factors_.T
