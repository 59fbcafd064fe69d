"""Item-based k-nearest neighbours with shrunk cosine similarity (Sarwar et al. 2001; Deshpande & Karypis 2004).

With c_ij the number of train users of both items and n_i of item i,
sim(i, j) = c_ij / (sqrt(n_i) * sqrt(n_j) + shrink) (cosine, shrunk towards 0 for rare pairs).
Each item keeps its ``k`` most similar neighbours (columns of a sparse (n_items, n_items) matrix
S); score(u) = h_u S, where h_u is the user's binary train row, or with ``recency_half_life`` (in
items) each history item weighs 0.5 ** (its position from the end of the user's sequence /
half-life), a cheap sequence-aware generator (``item_knn_recent``).
"""

from __future__ import annotations

import copy
from typing import Self

import numpy as np
import scipy.sparse as sp
import torch

from pathways.models_config import ItemKNNConfig
from training.evaluation.splits import positions_from_end
from training.models.base import ConfiguredModel
from training.recommender import Interactions, same_catalog


def recency_weighted(train: Interactions, half_life: float | None) -> sp.csr_matrix:
    """User x item CSR: 1 per train pair, or 0.5 ** (position from the end / ``half_life``)."""
    if half_life is None:
        return train.matrix(binary=True)
    order, from_end = positions_from_end(train)
    w = np.power(0.5, from_end / half_life).astype(np.float32)
    m = sp.csr_matrix((w, (train.users[order], train.items[order])), shape=(train.n_users, train.n_items))
    m.sum_duplicates()
    return m


class ItemKNN(ConfiguredModel):
    name = "item_knn"
    section = ItemKNNConfig
    config: ItemKNNConfig

    def fit(self, train: Interactions, *, valid: Interactions | None = None,
            item_features: np.ndarray | None = None) -> Self:
        cfg = self.config
        x = train.matrix(binary=True)
        xt = x.T.tocsr()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
        n = x.shape[1]
        k = min(cfg.k, max(n - 1, 1))
        rows, cols, vals = [], [], []
        for start in range(0, n, cfg.block):
            stop = min(start + cfg.block, n)
            co = (xt[start:stop] @ x).toarray()  # (block, n_items) co-occurrence counts, row = target item
            sim = co.astype(np.float32, copy=False)
            sim /= norms[start:stop, None] * norms[None, :] + np.float32(cfg.shrink + 1e-9)
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
        self.history_ = recency_weighted(train, cfg.recency_half_life)
        return self

    def fold_in(self, data: Interactions) -> Self:
        """A copy scoring ``data``'s users (``FoldIn``): their (recency-weighted) rows, the fitted S."""
        same_catalog(data, self.similarity_.shape[0])
        out = copy.copy(self)
        out.history_ = recency_weighted(data, self.config.recency_half_life)
        return out

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32: (recency-weighted) sum of similarities to the user's train items."""
        return np.asarray((self.history_[users] @ self.similarity_).toarray(), dtype=np.float32)
