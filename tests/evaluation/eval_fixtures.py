"""Tiny interaction sets whose answers are known, shared by the evaluation tests."""

from __future__ import annotations

import numpy as np

from training.recommender import Interactions


def make_interactions(rows: list[tuple[int, int, int]], n_users: int | None = None, n_items: int | None = None) -> Interactions:
    """``rows`` of (user, item, timestamp) on dense indices."""
    users, items, ts = (np.array(col, dtype=np.int64) for col in zip(*rows)) if rows else (np.zeros(0, np.int64),) * 3
    return Interactions(
        users=users,
        items=items,
        timestamps=ts,
        n_users=n_users if n_users is not None else int(users.max()) + 1,
        n_items=n_items if n_items is not None else int(items.max()) + 1,
        user_ids=np.arange(n_users if n_users is not None else int(users.max()) + 1, dtype=np.int64),
        item_ids=np.arange(n_items if n_items is not None else int(items.max()) + 1, dtype=np.int64) + 1000,
    )


def two_blocks(n_users: int = 40, n_items: int = 20, per_user: int = 5, seed: int = 0) -> Interactions:
    """Users 0..n/2-1 only touch items 0..m/2-1 (block A); the others only block B.

    Inside each block the items are popular in a shuffled order, so that every model has signal;
    timestamps increase per user.
    """
    rng = np.random.default_rng(seed)
    half_u, half_i = n_users // 2, n_items // 2
    rows = []
    for u in range(n_users):
        offset = 0 if u < half_u else half_i
        weights = np.linspace(2.0, 1.0, half_i)
        picks = rng.choice(half_i, size=per_user, replace=False, p=weights / weights.sum())
        rows += [(u, offset + int(i), 100 * u + t) for t, i in enumerate(picks)]
    return make_interactions(rows, n_users, n_items)
