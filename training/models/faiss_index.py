"""Exact inner-product retrieval through faiss for any factor model (two-tower, ALS, ...).

Like implicit's ``ann/faiss.py`` it wraps item vectors, not a particular model: build it from
``model.item_embeddings()`` or ALS ``item_factors`` and query with the matching user vectors.
``IndexFlatIP`` is exact and, at catalog sizes up to ~100k titles, as fast as HNSW on this
machine (STACK.md), so it is the default.
"""

from __future__ import annotations

import faiss
import numpy as np
import scipy.sparse as sp


class FaissRetriever:
    """Top-k items by inner product. ``item_vectors`` is (n_items, dim) float."""

    def __init__(self, item_vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(f"item_vectors must be a non-empty (n_items, dim) array, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("item_vectors contain NaN or inf")
        self.dim = int(vectors.shape[1])
        self.n_items = int(vectors.shape[0])
        self.index = faiss.IndexFlatIP(self.dim)
        self.index.add(vectors)

    def search(
        self,
        user_vectors: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        users: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, items), each (n_queries, k'), best first, k' = min(k, n_items).

        With ``exclude`` (user x item CSR) and ``users`` (dense user index per query row), each
        query's excluded items are dropped; rows that run out are padded with item -1, score -inf.
        """
        queries = np.ascontiguousarray(user_vectors, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"user_vectors must be (n, {self.dim}), got shape {queries.shape}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, self.n_items)
        if exclude is None:
            scores, items = self.index.search(queries, k)
            return scores, items.astype(np.int64)
        if users is None or len(users) != len(queries):
            raise ValueError("users must give one dense user index per query row when exclude is set")
        sub = exclude[np.asarray(users, dtype=np.int64)].tocsr()
        extra = int(np.diff(sub.indptr).max()) if sub.nnz else 0
        fetch = min(k + extra, self.n_items)
        scores, items = self.index.search(queries, fetch)
        items = items.astype(np.int64)
        for row in range(len(queries)):
            banned = sub.indices[sub.indptr[row] : sub.indptr[row + 1]]
            if banned.size:
                scores[row, np.isin(items[row], banned)] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(scores, order, axis=1)
        items = np.take_along_axis(items, order, axis=1)
        items[~np.isfinite(scores)] = -1
        return scores, items
