"""ALS: implicit's AlternatingLeastSquares (Hu, Koren & Volinsky 2008) on a weighted train matrix.

``weighting`` decides what implicit sees for the observed (user, item) pairs of the train matrix:
- ``none``: 1 (binary), ``bm25`` (implicit's bm25_weight, K1=100, B=0.8) or ``tfidf``; implicit
  scales them by ``alpha``.
- ``confidence``: the interaction weights (e.g. fraction watched; 0 when absent) summed per pair,
  turned into ``1 + alpha * sum`` for every pair seen (even a 0 sum) and fitted with implicit's own
  alpha at 1, so the formula is exactly what is fitted (the nightly model, ``training/als.py``).
score(u) = user_factors[u] . item_factors^T. ``num_threads`` is implicit's parallelism (0 = all
cores); ALS solves each user and item independently, so the result does not depend on it.
"""

from __future__ import annotations

import copy
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pathways.models_config import ALSConfig
from training.models.base import ImplicitFactorization
from training.recommender import Interactions, same_catalog


def summed_pairs(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR of ``weights`` summed per (row, col), with a stored entry for every pair seen, even a 0 sum."""
    n_cols = max(shape[1], 1)
    pair, inverse = np.unique(np.asarray(rows, np.int64) * n_cols + np.asarray(cols, np.int64), return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(weights, np.float64), minlength=len(pair))
    return sp.csr_matrix((sums.astype(np.float32), (pair // n_cols, pair % n_cols)), shape=shape)


def confidence_matrix(summed: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """``1 + alpha * summed`` on the stored entries (the pairs seen), CSR float32."""
    c = summed.astype(np.float32).tocsr(copy=True)
    c.data = 1.0 + alpha * c.data
    return c


def weighted(x: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    """The binary matrix ``x`` re-weighted per column (item) by ``none``, ``bm25`` or ``tfidf``."""
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    if weighting == "bm25":
        return bm25_weight(x, K1=100, B=0.8).tocsr().astype(np.float32)
    if weighting == "tfidf":
        return tfidf_weight(x).tocsr().astype(np.float32)
    return x.astype(np.float32)


class ALS(ImplicitFactorization):
    name = "als"
    section = ALSConfig
    config: ALSConfig
    reports_loss = True

    def _matrix(self, train: Interactions) -> sp.csr_matrix:
        if self.config.weighting != "confidence":
            return weighted(train.matrix(binary=True), self.config.weighting)
        w = np.zeros(len(train), np.float32) if train.weights is None else np.asarray(train.weights, np.float32)
        summed = summed_pairs(train.users, train.items, w, (train.n_users, train.n_items))
        return confidence_matrix(summed, self.config.alpha)

    def fold_in(self, data: Interactions) -> Self:
        """A copy whose user factors are ``data``'s users solved against the fitted item factors
        (``FoldIn``): implicit's ``recalculate_user``, one exact least-squares solve per user on the
        matrix ``fit`` would see (same weighting). Cost: linear in ``data``'s pairs x factors^2."""
        same_catalog(data, self.item_factors_.shape[0])
        x = self._matrix(data)
        out = copy.copy(self)
        if data.n_users == 0:
            out.user_factors_ = np.zeros((0, self.item_factors_.shape[1]), np.float32)
            return out
        with threadpool_limits(1, "blas"):
            model = self._model()
            model.item_factors = self.item_factors_
            out.user_factors_ = np.asarray(model.recalculate_user(np.arange(data.n_users), x), np.float32)
        return out

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        cfg = self.config
        return AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=1.0 if cfg.weighting == "confidence" else cfg.alpha,
            iterations=cfg.iterations,
            calculate_training_loss=cfg.calculate_training_loss,
            random_state=self.seed,
            num_threads=cfg.num_threads,
        )
