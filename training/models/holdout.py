"""Leave-last-k holdouts and top-k metrics used inside model training (early stopping, ranker labels).

The evaluation harness owns the reported numbers; these helpers exist so that a model can carve
its own validation split from the data it is given (never from test) with the same protocol:
per user, interactions ordered by (timestamp, item); the last ``k`` are held out, the user keeps
at least ``min_train`` earlier ones (users with fewer interactions keep everything).
"""

from __future__ import annotations


import numpy as np

from training.recommender import Interactions


def leave_last_k(data: Interactions, k: int = 5, min_train: int = 1) -> tuple[Interactions, Interactions]:
    """Split into (train, holdout): each user's last ``k`` by (timestamp, item) go to holdout.

    Users with fewer than ``k + min_train`` interactions stay entirely in train. Both parts keep
    ``n_users``/``n_items`` and the id maps, so dense indices mean the same thing in each.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if min_train < 1:
        raise ValueError(f"min_train must be >= 1, got {min_train}")
    order = np.lexsort((data.items, data.timestamps, data.users))
    users = data.users[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_from_end = counts[users] - (np.arange(len(users)) - starts[users]) - 1  # 0 = last
    held = (rank_from_end < k) & (counts[users] >= k + min_train)
    mask = np.zeros(len(data), dtype=bool)
    mask[order[held]] = True
    return data.subset(~mask), data.subset(mask)


def ranking_metrics(topk: np.ndarray, users: np.ndarray, holdout: Interactions, k: int) -> dict[str, float]:
    """Mean NDCG@k (binary gains) and Recall@k (hits / min(k, |holdout|)) over ``users``.

    ``topk`` is (len(users), >= k) dense item indices in ranked order; users without holdout
    items are skipped.
    """
    truth = holdout.matrix(binary=True).tocsr()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg, recall = [], []
    for row, u in enumerate(users):
        relevant = truth.indices[truth.indptr[u] : truth.indptr[u + 1]]
        if relevant.size == 0:
            continue
        hits = np.isin(topk[row, :k], relevant)
        ideal = discounts[: min(k, relevant.size)].sum()
        ndcg.append(float((hits * discounts[: hits.size]).sum() / ideal))
        recall.append(float(hits.sum() / min(k, relevant.size)))
    if not ndcg:
        return {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0}
    return {f"ndcg@{k}": float(np.mean(ndcg)), f"recall@{k}": float(np.mean(recall))}


def users_with_holdout(holdout: Interactions) -> np.ndarray:
    """Sorted dense indices of users that have at least one held-out interaction."""
    return np.unique(holdout.users)
