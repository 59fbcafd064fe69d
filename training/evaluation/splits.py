"""Evaluation protocols: how interactions are cut into train and test (see docs/evaluation.md).

- ``LeaveLastN(n=5)``: per user, interactions ordered by (timestamp, item id); the last ``n`` are
  test, the earlier ones train (``leave_last_k``, which models also use to carve validation). Users with at most ``n`` interactions keep all of them in train
  and are not evaluated (a user needs ``n + 1`` so that train is non-empty).
- ``Temporal(quantile=0.9)`` (or a fixed ``cut`` in seconds): one global cut time; train is every
  interaction strictly before it; test is, for users with interactions on both sides, what they
  did at or after it. Interactions after the cut of users without train history are dropped.

Both keep ``n_users``/``n_items`` and the id maps, so dense indices mean the same thing in train
and test. ``protocol.validation(train)`` carves a validation split from train the same way (for
``Temporal``, at the same quantile of train's timestamps); all tuning uses it, never test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from training.recommender import Interactions


@dataclass(frozen=True)
class Split:
    """Train interactions and, per evaluated user (dense index), the held-out items (int64 arrays)."""

    train: Interactions
    test: dict[int, np.ndarray]
    protocol: str

    def test_users(self) -> np.ndarray:
        """Evaluated users, sorted, shape (n_test_users,)."""
        return np.array(sorted(self.test), dtype=np.int64)

    def test_matrix(self) -> sp.csr_matrix:
        """Test positives as a binary (n_users, n_items) CSR."""
        users = self.test_users()
        rows = np.concatenate([np.full(len(self.test[u]), u) for u in users]) if len(users) else np.zeros(0, np.int64)
        cols = np.concatenate([self.test[u] for u in users]) if len(users) else np.zeros(0, np.int64)
        shape = (self.train.n_users, self.train.n_items)
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)


class SplitProtocol(Protocol):
    @property
    def name(self) -> str: ...

    def split(self, data: Interactions) -> Split: ...

    def validation(self, train: Interactions) -> Split: ...


def positions_from_end(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(order, from_end): ``order`` sorts rows by (user, timestamp, item); ``from_end[j]`` is the
    position of row ``order[j]`` counted from the end of its user's sequence (0 = the last)."""
    order = np.lexsort((data.items, data.timestamps, data.users))
    users = data.users[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, counts[users] - (np.arange(len(users)) - starts[users]) - 1


def leave_last_k(data: Interactions, k: int = 5, min_train: int = 1) -> tuple[Interactions, Interactions]:
    """Split into (train, holdout): each user's last ``k`` by (timestamp, item) go to holdout.

    Users with fewer than ``k + min_train`` interactions stay entirely in train. Both parts keep
    ``n_users``/``n_items`` and the id maps, so dense indices mean the same thing in each. Models
    carve their own validation split from the data they are given with it (never from test).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if min_train < 1:
        raise ValueError(f"min_train must be >= 1, got {min_train}")
    order, from_end = positions_from_end(data)
    counts = np.bincount(data.users, minlength=data.n_users)
    held = (from_end < k) & (counts[data.users[order]] >= k + min_train)
    mask = np.zeros(len(data), dtype=bool)
    mask[order[held]] = True
    return data.subset(~mask), data.subset(mask)


def _group(users: np.ndarray, items: np.ndarray, n_users: int) -> dict[int, np.ndarray]:
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    keys, starts = np.unique(users, return_index=True)
    ends = np.r_[starts[1:], len(users)]
    return {int(u): items[s:e].copy() for u, s, e in zip(keys, starts, ends)}


@dataclass(frozen=True)
class LeaveLastN:
    n: int = 5

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"leave-last-n: n must be >= 1, got {self.n}")

    @property
    def name(self) -> str:
        return f"leave-last-{self.n}"

    def split(self, data: Interactions) -> Split:
        train, test = leave_last_k(data, self.n)
        return Split(train, _group(test.users, test.items, data.n_users), self.name)

    def validation(self, train: Interactions) -> Split:
        return self.split(train)


@dataclass(frozen=True)
class Temporal:
    quantile: float = 0.9
    cut: int | None = None  # seconds since epoch; overrides quantile for the test split

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"temporal: quantile must lie in (0, 1), got {self.quantile}")

    @property
    def name(self) -> str:
        return "temporal"

    def cut_time(self, data: Interactions) -> int:
        if self.cut is not None:
            return int(self.cut)
        if len(data) == 0:
            raise ValueError("temporal: no interactions to place a cut in")
        return int(np.quantile(data.timestamps, self.quantile, method="higher"))

    def split(self, data: Interactions) -> Split:
        cut = self.cut_time(data)
        before = data.timestamps < cut
        has_train = np.bincount(data.users[before], minlength=data.n_users) > 0
        after = ~before & has_train[data.users]
        test = _group(data.users[after], data.items[after], data.n_users)
        return Split(data.subset(before), test, self.name)

    def validation(self, train: Interactions) -> Split:
        return Temporal(quantile=self.quantile).split(train)


def protocol_from_name(name: str, n: int = 5, quantile: float = 0.9) -> SplitProtocol:
    """``leave-last-5`` (any n), ``leave-last-n`` (uses ``n``) or ``temporal``."""
    if name == "temporal":
        return Temporal(quantile=quantile)
    if name.startswith("leave-last-"):
        tail = name.removeprefix("leave-last-")
        if tail == "n":
            return LeaveLastN(n)
        if tail.isdigit():
            return LeaveLastN(int(tail))
    raise ValueError(f"unknown protocol {name!r}: use leave-last-<n> (e.g. leave-last-5) or temporal")
