"""Item-based k-nearest neighbours with shrunk cosine similarity (Sarwar et al. 2001; Deshpande & Karypis 2004).

With c_ij the number of train users of both items and n_i of item i,
sim(i, j) = c_ij / (sqrt(n_i) * sqrt(n_j) + shrink) (cosine, shrunk towards 0 for rare pairs).
Each item keeps its ``k`` most similar neighbours (columns of a sparse (n_items, n_items) matrix S); score(u) = x_u S, where x_u is the
user's binary train row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from training.recommender import Interactions


class ItemKNN:
    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 10.0, block: int = 1024) -> None:
        self.k = k
        self.shrink = shrink
        self.block = block

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        return {
            "k": trial.suggest_int("k", 10, 1000, log=True),
            "shrink": trial.suggest_float("shrink", 0.0, 200.0),
        }

    def get_params(self) -> dict[str, Any]:
        return {"k": self.k, "shrink": self.shrink}

    def fit(self, train: Interactions) -> "ItemKNN":
        if self.k < 1:
            raise ValueError(f"ItemKNN.k must be >= 1, got {self.k}")
        if self.shrink < 0:
            raise ValueError(f"ItemKNN.shrink must be >= 0, got {self.shrink}")
        x = train.matrix(binary=True)
        xt = x.T.tocsr()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
        n = x.shape[1]
        k = min(self.k, max(n - 1, 1))
        rows, cols, vals = [], [], []
        for start in range(0, n, self.block):
            stop = min(start + self.block, n)
            co = (xt[start:stop] @ x).toarray()  # (block, n_items) co-occurrence counts, row = target item
            sim = co.astype(np.float32, copy=False)
            sim /= norms[start:stop, None] * norms[None, :] + np.float32(self.shrink + 1e-9)
            sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
            values, indices = torch.topk(torch.from_numpy(sim), k, dim=1, sorted=False)  # ~4x argpartition
            top, top_vals = indices.numpy(), values.numpy()
            keep = top_vals > 0
            rows.append(top[keep])  # neighbour j ...
            cols.append(np.broadcast_to(np.arange(start, stop)[:, None], top.shape)[keep])  # ... of target i
            vals.append(top_vals[keep])
        self.similarity_ = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        self.user_items_ = x
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32: sum of similarities to the user's train items."""
        return np.asarray((self.user_items_[users] @ self.similarity_).toarray(), dtype=np.float32)
