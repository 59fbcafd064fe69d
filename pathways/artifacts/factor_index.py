"""The one faiss wrapper: exact top-k by inner product over item vectors, with optional exclusions.

Like implicit's ``ann/faiss.py`` it wraps item vectors, not a particular model: build it from ALS
``item_factors`` or a two-tower / SASRec ``item_embeddings()`` and query with the matching user
vectors. ``IndexFlatIP`` is exact and, at catalog sizes up to ~100k titles, as fast as HNSW on this
machine (STACK.md); ``normalize=True`` indexes unit vectors (cosine similarity).

Every search runs faiss's BLAS kernel (``distance_compute_blas_threshold`` is set to ``PAD_ROWS``;
faiss 1.15's default of 128,000 queries keeps every batch we send on its slower SIMD loop: 1.5x
slower for 256 queries of 64 factors over 7,876 titles), one matrix product per tile of exactly
``PAD_ROWS`` queries (``distance_compute_blas_query_bs``), the queries padded with zero rows to a
whole tile. BLAS rounds a score in the last bit by where its query sits in the matrix product: on
an Intel machine only a lone query or a ragged last tile differed, but on an AMD EPYC (AVX2, faiss's
OpenBLAS 0.3.15) a query's bits in one product of 16 or more queries depend on its place among
them. A product of one tile of 8 gives a query the same bits wherever it sits, on 1 and 2 threads
(``tests/candidates/test_block_search.py``: it fails on that AMD machine with whole-batch
products), so the block path and the per-profile path agree exactly. The cost: a lone query
computes ``PAD_ROWS`` rows (about 1 ms instead of 0.2 over 7,876 titles of 64 factors), and a
block's search ~1.3x the time of one product for all its queries (20,000 titles of 64 factors,
AMD EPYC). Items go through in blocks of ``DATABASE_ROWS`` (faiss's default 1,024 makes
8-query products too small to pay for their calls).
"""

from __future__ import annotations

import faiss
import numpy as np
import scipy.sparse as sp

PAD_ROWS = 8  # queries per BLAS product: batch-independent bits on 1 and 2 threads (measured; 4 was not on 2)
DATABASE_ROWS = 16_384  # items per product: a tile's scores are 8 x 16,384 floats (512 KB)
faiss.cvar.distance_compute_blas_threshold = PAD_ROWS  # every (padded) batch takes the BLAS kernel
faiss.cvar.distance_compute_blas_query_bs = PAD_ROWS  # ... one tile per product: the same bits in any batch
faiss.cvar.distance_compute_blas_database_bs = DATABASE_ROWS


class FactorIndex:
    """Exact maximum-inner-product search over ``vectors`` (n_items, dim) float32."""

    def __init__(self, vectors: np.ndarray, normalize: bool = False) -> None:
        vecs = np.array(vectors, dtype=np.float32, order="C")  # a copy: normalization must not touch the caller's
        if vecs.ndim != 2 or vecs.shape[0] == 0:
            raise ValueError(f"item vectors must be a non-empty (n_items, dim) array, got shape {vecs.shape}")
        if not np.isfinite(vecs).all():
            raise ValueError("item vectors contain NaN or inf")
        if normalize:
            faiss.normalize_L2(vecs)
        self.normalize = normalize
        self.vectors = vecs
        self.dim = int(vecs.shape[1])
        self.index = faiss.IndexFlatIP(self.dim)
        self.index.add(vecs)
        self._len = int(self.index.ntotal)  # fixed once built; SWIG's ntotal read was ~1.6% of the page builders' GIL time

    def __len__(self) -> int:
        return self._len

    def subset(self, rows: np.ndarray) -> FactorIndex:
        """An index of this one's items ``rows`` (ascending, non-empty): its row i is row ``rows[i]``
        here, with the same vectors (already unit ones are not normalized again) and the same
        query normalization. Ties keep their order: faiss breaks them by row, and rows keep theirs."""
        rows = np.asarray(rows, np.int64)
        if not len(rows) or (np.diff(rows) <= 0).any() or rows[0] < 0 or rows[-1] >= len(self):
            raise ValueError(f"rows must be ascending, distinct and within 0..{len(self) - 1}")
        sub = FactorIndex(self.vectors[rows])
        sub.normalize = self.normalize
        return sub

    def search(
        self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per query: (scores float32, rows int64), each (n_queries, min(k, n_items)), best first.

        ``queries`` is (n_queries, dim) or one (dim,) vector. ``exclude`` (n_queries, n_items) CSR, one
        row per query: its nonzero columns are dropped from that query's result; a query that runs out
        of items is padded with row -1 and score -inf.
        """
        q = np.array(np.atleast_2d(queries), dtype=np.float32, order="C")
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (n, {self.dim}), got shape {q.shape}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.normalize:
            faiss.normalize_L2(q)
        k = min(int(k), len(self))
        if exclude is None:
            scores, rows = self._search(q, k)
            return scores, rows.astype(np.int64)
        if exclude.shape != (len(q), len(self)):
            raise ValueError(f"exclude must be (n_queries, n_items) = {(len(q), len(self))}, got {exclude.shape}")
        exclude = sp.csr_matrix(exclude)
        extra = int(np.diff(exclude.indptr).max()) if exclude.nnz else 0
        scores, rows = self._search(q, min(k + extra, len(self)))
        rows = rows.astype(np.int64)
        for i in range(len(q)):
            banned = exclude.indices[exclude.indptr[i] : exclude.indptr[i + 1]]
            if banned.size:
                scores[i, np.isin(rows[i], banned)] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(scores, order, axis=1)
        rows = np.take_along_axis(rows, order, axis=1)
        rows[~np.isfinite(scores)] = -1
        return scores, rows

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's top ``k`` of the queries ``q`` through the BLAS kernel, padded to whole tiles."""
        n = len(q)
        pad = -n % PAD_ROWS
        if pad:
            q = np.concatenate([q, np.zeros((pad, q.shape[1]), np.float32)])
        scores, rows = self.index.search(q, k)
        return scores[:n], rows[:n]
