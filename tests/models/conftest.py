"""Tiny interaction sets whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.recommender import Interactions


def make_interactions(users, items, n_users: int, n_items: int, timestamps=None) -> Interactions:
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ts = np.arange(len(users), dtype=np.int64) * 60 if timestamps is None else np.asarray(timestamps, np.int64)
    return Interactions(users=users, items=items, timestamps=ts, n_users=n_users, n_items=n_items)


def cycle_data(n_users: int = 24, length: int = 12, n_items: int = 9, seed: int = 0) -> Interactions:
    """Users in block b (u % 3) walk the cycle 3b -> 3b+1 -> 3b+2 -> 3b, starting at a random phase;
    one event a minute, so the next item of every sequence is determined by the last."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        block, phase = u % 3, int(rng.integers(3))
        for t in range(length):
            users.append(u)
            items.append(3 * block + (phase + t) % 3)
            ts.append(1_000_000 + 60 * t)
    return make_interactions(users, items, n_users, n_items, ts)


def successor_data(n_users: int = 60, length: int = 8, n_items: int = 30, seed: int = 0) -> Interactions:
    """Each user starts at a random item i and then watches i+1, i+2, ... (mod n_items), one a
    minute: the next item is always last + 1 and is never one already watched."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        users += [u] * length
        items += [(start + t) % n_items for t in range(length)]
        ts += [1_000_000 + 60 * t + u for t in range(length)]
    return make_interactions(users, items, n_users, n_items, ts)


def block_data(n_users: int = 40, n_items: int = 20, per_user: int = 6, seed: int = 0) -> Interactions:
    """Two disjoint blocks: even users watch only items < n_items/2, odd users only the rest."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    users, items, ts = [], [], []
    for u in range(n_users):
        base = 0 if u % 2 == 0 else half
        chosen = base + rng.choice(half, size=per_user, replace=False)
        users += [u] * per_user
        items += list(chosen)
        ts += list(1_000_000 + 3600 * np.arange(per_user) + u)
    return make_interactions(users, items, n_users, n_items, ts)


@pytest.fixture
def cycles() -> Interactions:
    return cycle_data()


@pytest.fixture
def successors() -> Interactions:
    return successor_data()


@pytest.fixture
def blocks() -> Interactions:
    return block_data()
