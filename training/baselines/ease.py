"""EASE: embarrassingly shallow autoencoder (Steck 2019), closed form.

With X the binary (n_users, n_items) train matrix and P = (X^T X + lambda I)^-1, the item-item
weights are B = I - P diag(1 / diag(P)) (zero diagonal) and score(u) = x_u B.

Two exact ways to compute it, chosen by shape:
- item side (n_items <= n_users): invert the (n_items, n_items) Gram matrix (Cholesky).
- user side (n_users < n_items): by Woodbury, P = (I - X^T M X) / lambda with
  M = (X X^T + lambda I)^-1, and X P = M X =: W, so for a train user
  score(u) = x_u - W_u / diag(P), diag(P) = (1 - colsum(W * X)) / lambda. Costs O(n_users^3).
On the item side only the ``max_items`` most popular items are modelled (the rest score 0), so a
catalog of 60k titles does not need a 60k x 60k inverse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sl
import scipy.sparse as sp

from training.recommender import Interactions


class EASE:
    name = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 20_000) -> None:
        self.l2 = l2
        self.max_items = max_items

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        return {"l2": trial.suggest_float("l2", 1.0, 1e4, log=True)}

    def get_params(self) -> dict[str, Any]:
        return {"l2": self.l2, "max_items": self.max_items}

    def fit(self, train: Interactions) -> "EASE":
        if self.l2 <= 0:
            raise ValueError(f"EASE.l2 must be > 0, got {self.l2}")
        x = train.matrix(binary=True)
        self.n_items_ = x.shape[1]
        self.user_items_ = x
        counts = np.asarray(x.sum(axis=0)).ravel()
        active = np.flatnonzero(counts > 0)  # items without train users have B = 0
        if len(active) > self.max_items:
            active = np.sort(np.argsort(-counts, kind="stable")[: self.max_items])
        self.items_ = active
        xa = x[:, active].tocsr()
        if x.shape[0] < len(active):
            self.mode_ = "user"
            gram = (xa @ xa.T).toarray().astype(np.float64) + self.l2 * np.eye(x.shape[0])
            m = sl.cho_solve(sl.cho_factor(gram), np.eye(x.shape[0]))
            w = np.asarray(xa.T @ m).T  # (n_users, n_active) = M X
            diag_p = (1.0 - np.asarray(xa.multiply(w).sum(axis=0)).ravel()) / self.l2
            self.w_ = w.astype(np.float32)
            self.inv_diag_ = (1.0 / diag_p).astype(np.float32)
        else:
            self.mode_ = "item"
            gram = (xa.T @ xa).toarray().astype(np.float32)
            gram[np.diag_indices_from(gram)] += self.l2
            chol, info = sl.lapack.spotrf(gram, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"EASE: Cholesky failed (info={info}); raise l2")
            p, info = sl.lapack.spotri(chol, lower=1)
            p = np.tril(p) + np.tril(p, -1).T
            b = -p / np.diag(p)[None, :]
            np.fill_diagonal(b, 0.0)
            self.b_ = b.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32."""
        xa = self.user_items_[users][:, self.items_]
        if self.mode_ == "user":
            part = xa.toarray() - self.w_[users] * self.inv_diag_[None, :]
        else:
            part = np.asarray(xa @ self.b_)
        out = np.zeros((len(users), self.n_items_), np.float32)
        out[:, self.items_] = part
        return out
