"""EASE: embarrassingly shallow autoencoder (Steck 2019), closed form.

With X the binary (n_users, n_items) train matrix and P = (X^T X + lambda I)^-1, the item-item
weights are B = I - P diag(1 / diag(P)) (zero diagonal) and score(u) = x_u B.

Only items with at least ``min_count`` train users take part, at most the ``max_items`` most
popular (the rest score 0), so a catalog of 60k titles does not need a 60k x 60k inverse.
``solver`` picks how P is computed:
- ``cholesky``, item side (n_active <= n_users): float32 Cholesky inverse of the Gram matrix.
- ``cholesky``, user side (n_users < n_active): by Woodbury, P = (I - X^T M X) / lambda with
  M = (X X^T + lambda I)^-1, and X P = M X =: W, so for a train user
  score(u) = x_u - W_u / diag(P), diag(P) = (1 - colsum(W * X)) / lambda. Costs O(n_users^3).
- ``inverse``: float64 inverse of the item-side Gram matrix, always.
"""

from __future__ import annotations

import copy
from typing import Self

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pathways.models_config import EASEConfig
from training.models.base import ConfiguredModel
from training.recommender import Interactions, same_catalog


def _item_side_cholesky(xa: sp.csr_matrix, l2: float) -> np.ndarray:
    gram = (xa.T @ xa).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += l2
    chol, info = sl.lapack.spotrf(gram, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: Cholesky failed (info={info}); raise l2")
    p, info = sl.lapack.spotri(chol, lower=1)
    p = np.tril(p) + np.tril(p, -1).T
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def _item_side_inverse(xa: sp.csr_matrix, l2: float) -> np.ndarray:
    with threadpool_limits(1, "blas"):
        gram = (xa.T @ xa).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += l2
        p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


class EASE(ConfiguredModel):
    name = "ease"
    section = EASEConfig
    config: EASEConfig

    def fit(self, train: Interactions, *, valid: Interactions | None = None,
            item_features: np.ndarray | None = None) -> Self:
        cfg = self.config
        x = train.matrix(binary=True)
        self.n_items_ = x.shape[1]
        counts = np.asarray(x.sum(axis=0)).ravel()
        active = np.flatnonzero(counts >= cfg.min_count)
        if len(active) > cfg.max_items:
            active = np.sort(active[np.argsort(-counts[active], kind="stable")[: cfg.max_items]])
        self.items_ = active
        xa = x[:, active].tocsr()
        self.history_ = xa
        if cfg.solver == "cholesky" and x.shape[0] < len(active):
            self.mode_ = "user"
            gram = (xa @ xa.T).toarray().astype(np.float64) + cfg.l2 * np.eye(x.shape[0])
            m = sl.cho_solve(sl.cho_factor(gram), np.eye(x.shape[0]))
            w = np.asarray(xa.T @ m).T  # (n_users, n_active) = M X
            diag_p = (1.0 - np.asarray(xa.multiply(w).sum(axis=0)).ravel()) / cfg.l2
            self.w_ = w.astype(np.float32)
            self.inv_diag_ = (1.0 / diag_p).astype(np.float32)
        else:
            self.mode_ = "item"
            self.b_ = (_item_side_cholesky if cfg.solver == "cholesky" else _item_side_inverse)(xa, cfg.l2)
        return self

    def fold_in(self, data: Interactions) -> Self:
        """A copy scoring ``data``'s users from their rows (``FoldIn``). Item side: B as fitted. User
        side: W's new rows are x P = (x - (x X^T) W) / lambda (Woodbury, X the fit-time rows), which
        is exactly W_u for a fit-time user, so folding a train user in gives its fitted scores."""
        same_catalog(data, self.n_items_)
        xa = data.matrix(binary=True)[:, self.items_].tocsr()
        out = copy.copy(self)
        out.history_ = xa
        if self.mode_ == "user":
            with threadpool_limits(1, "blas"):
                w = (xa.toarray() - np.asarray((xa @ self.history_.T) @ self.w_)) / self.config.l2
            out.w_ = w.astype(np.float32)
        return out

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32."""
        xa = self.history_[users]
        if self.mode_ == "user":
            part = xa.toarray() - self.w_[users] * self.inv_diag_[None, :]
        else:
            part = np.asarray(xa @ self.b_)
        out = np.zeros((len(users), self.n_items_), np.float32)
        out[:, self.items_] = part
        return out
