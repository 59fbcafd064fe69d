"""Top-K metrics over ranked lists, vectorized over users (definitions in docs/evaluation.md).

Inputs: ``topk`` (n_users_eval, K_max) int dense item indices in ranked order; ``hits`` the same
shape, bool, True where the item is a test positive of that user; ``n_relevant`` (n_users_eval,)
the size of each user's test set. Accuracy metrics are means over evaluated users.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hit_matrix(topk: np.ndarray, users: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """(len(users), K) bool: ``topk[r, j]`` is in ``truth[users[r]]``."""
    n_items = truth.shape[1]
    sub = truth[users]
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    keys = rows * n_items + sub.indices.astype(np.int64)
    keys.sort()
    query = np.arange(len(users), dtype=np.int64)[:, None] * n_items + topk.astype(np.int64)
    if len(keys) == 0:
        return np.zeros(topk.shape, bool)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return (keys[pos] == query) & (topk >= 0)  # -1 pads never hit


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """mean over users of |hits in top k| / min(k, |test|)."""
    return float(np.mean(hits[:, :k].sum(axis=1) / np.minimum(k, n_relevant)))


def ndcg_per_user(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Each user's NDCG@k, (n_users,) float64 (see ``ndcg_at_k``)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    idcg = np.cumsum(discounts)[np.minimum(k, n_relevant) - 1]
    return np.asarray(dcg / idcg, np.float64)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Binary gains: DCG = sum_j hit_j / log2(j + 2) (j 0-based); IDCG puts min(k, |test|) hits first."""
    return float(np.mean(ndcg_per_user(hits, n_relevant, k)))


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """AP@k = sum_j precision@(j+1) * hit_j / min(k, |test|); MAP@k is its mean over users."""
    h = hits[:, :k].astype(np.float64)
    precision = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return float(np.mean((precision * h).sum(axis=1) / np.minimum(k, n_relevant)))


def coverage_at_k(topk: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalog that appears in at least one user's top k."""
    return float(np.unique(topk[:, :k]).size / n_items)


def item_popularity(train: sp.csr_matrix) -> np.ndarray:
    """(n_items,) number of train users per item."""
    return np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float64)


def novelty_at_k(topk: np.ndarray, popularity: np.ndarray, n_users: int, k: int) -> float:
    """Mean self-information -log2(p_i) of recommended items, p_i = max(pop_i, 1) / n_users."""
    p = np.maximum(popularity[topk[:, :k]], 1.0) / max(n_users, 1)
    return float(np.mean(-np.log2(p)))


def popularity_percentile(popularity: np.ndarray) -> np.ndarray:
    """(n_items,) share of items strictly less popular, in [0, 1) (ties share the lowest rank)."""
    ordered = np.sort(popularity)
    return np.searchsorted(ordered, popularity, side="left") / max(len(popularity), 1)


def mean_popularity_percentile(topk: np.ndarray, popularity: np.ndarray, k: int) -> float:
    """Popularity bias: mean popularity percentile of recommended items (0.5 = unbiased by count)."""
    return float(np.mean(popularity_percentile(popularity)[topk[:, :k]]))


def gini_at_k(topk: np.ndarray, n_items: int, k: int) -> float:
    """Gini of how often each catalog item is recommended (0 = every item equally, ->1 = a few)."""
    counts = np.sort(np.bincount(topk[:, :k].ravel(), minlength=n_items)).astype(np.float64)
    if counts.sum() == 0:
        return 0.0
    index = np.arange(1, n_items + 1)
    return float(((2 * index - n_items - 1) * counts).sum() / (n_items * counts.sum()))


def genre_matrix(item_genres: list[list[str]]) -> np.ndarray:
    """(n_items, n_genres) float32 multi-hot."""
    names = sorted({g for gs in item_genres for g in gs})
    col = {g: j for j, g in enumerate(names)}
    out = np.zeros((len(item_genres), max(len(names), 1)), np.float32)
    for i, gs in enumerate(item_genres):
        out[i, [col[g] for g in gs]] = 1.0
    return out


def intra_list_diversity(topk: np.ndarray, genres: np.ndarray, k: int, batch: int = 2048) -> float:
    """Mean over lists and unordered pairs (i, j) of 1 - Jaccard(genres_i, genres_j).

    Two items without genres count as identical (distance 0). Lists shorter than 2: 0.
    """
    k = min(k, topk.shape[1])
    if k < 2 or len(topk) == 0:
        return 0.0
    upper = np.triu(np.ones((k, k), bool), 1)
    total = 0.0
    for start in range(0, len(topk), batch):
        g = genres[topk[start : start + batch, :k]]  # (b, k, n_genres)
        inter = np.einsum("bkg,bjg->bkj", g, g)
        sizes = g.sum(axis=2)
        union = sizes[:, :, None] + sizes[:, None, :] - inter
        distance = np.where(union > 0, 1.0 - inter / np.maximum(union, 1e-9), 0.0)
        total += float(distance[:, upper].mean(axis=1).sum())
    return total / len(topk)


def ndcg_recall(topk: np.ndarray, users: np.ndarray, truth: sp.csr_matrix, k: int) -> dict[str, float]:
    """``ndcg@k`` and ``recall@k`` of ``topk`` (len(users), >= k) against ``truth`` (n_users, n_items)
    CSR; every user must have at least one relevant item (early stopping inside the models)."""
    hits = hit_matrix(topk, users, truth)
    n_relevant = np.diff(truth.indptr)[users]
    return {f"ndcg@{k}": ndcg_at_k(hits, n_relevant, k), f"recall@{k}": recall_at_k(hits, n_relevant, k)}
