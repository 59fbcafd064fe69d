"""The interface every top-N model speaks, the interactions it learns from, and top-k selection.

Data: ``Interactions`` holds positive interactions as parallel arrays over *dense* indices
(users 0..n_users-1, items 0..n_items-1), with timestamps so sequence models can order them.
Models (``Recommender``): ``fit(train, *, valid=None, item_features=None)`` learns (state in
attributes ending in ``_``; models that need no validation split or side information accept and
ignore them), ``score(users)`` returns a dense (len(users), n_items) float32 matrix, higher is
better; ``save(path)`` / ``load(path)`` persist a fitted model. ``recommend`` turns scores into
top-k with a user's train items excluded; ``union_candidates`` merges several ranked lists.
Randomness comes from the ``seed`` given to the model only.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Interactions:
    """Positive interactions. Arrays are parallel, shape (n,). ``weights`` default to 1."""

    users: np.ndarray  # int64 dense user index
    items: np.ndarray  # int64 dense item index
    timestamps: np.ndarray  # int64 seconds since epoch
    n_users: int
    n_items: int
    weights: np.ndarray | None = None  # float32, e.g. fraction watched or rating
    user_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # dense -> original
    item_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def subset(self, mask: np.ndarray) -> Interactions:
        """The rows where ``mask`` (shape (n,)) is True, in the same index space."""
        return replace(
            self,
            users=self.users[mask],
            items=self.items[mask],
            timestamps=self.timestamps[mask],
            weights=None if self.weights is None else self.weights[mask],
        )

    def matrix(self, binary: bool = True) -> sp.csr_matrix:
        """User x item CSR (duplicates summed; binary=True clips values to 1)."""
        w = np.ones(len(self), np.float32) if (binary or self.weights is None) else self.weights
        m = sp.csr_matrix((w, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def sequences(self) -> list[np.ndarray]:
        """Per user, item indices ordered by (timestamp, item): index u -> array."""
        order = np.lexsort((self.items, self.timestamps, self.users))
        users, items = self.users[order], self.items[order]
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]


@runtime_checkable
class Recommender(Protocol):
    name: str

    def fit(self, train: Interactions, *, valid: Interactions | None = None,
            item_features: np.ndarray | None = None) -> Self:
        """Learn from ``train``; ``valid`` (same index space) for early stopping, ``item_features``
        (n_items, f) float side information. Models that do not use them ignore them."""
        ...

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 scores for dense user indices."""
        ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> Self: ...


@runtime_checkable
class FactorModel(Protocol):
    """A model whose ``score`` is exactly ``user_embeddings(users) @ item_embeddings().T``."""

    def user_embeddings(self, users: np.ndarray) -> np.ndarray: ...

    def item_embeddings(self) -> np.ndarray: ...


@runtime_checkable
class FoldIn(Protocol):
    """A fitted model that scores other users from their histories without retraining (fold-in).

    ``fold_in(data)`` returns a copy whose users are ``data``'s (dense 0..data.n_users-1, same
    catalog); the learned item side is unchanged. Scoring a user folded in alone or in a block of
    others gives the same result.
    """

    def fold_in(self, data: Interactions) -> Self: ...


def same_catalog(data: Interactions, n_items: int) -> None:
    """Raise unless ``data`` indexes the ``n_items`` items the model was fit on."""
    if data.n_items != n_items:
        raise ValueError(f"data has n_items={data.n_items}, the model was fit with {n_items}")


class Pickled:
    """``save``/``load`` by pickle for models whose learned state is plain arrays (trusted files only)."""

    def save(self, path: str | Path) -> None:
        if not any(k.endswith("_") and not k.startswith("_") for k in vars(self)):
            raise ValueError(f"{type(self).__name__} must be fit before save")
        with open(path, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        with open(path, "rb") as fh:
            model = pickle.load(fh)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def top_k_excluding(
    scores: np.ndarray, users: np.ndarray, exclude: sp.csr_matrix | None, k: int, pad: bool = False
) -> np.ndarray:
    """Top-k item indices per row of ``scores`` (len(users), n_items) with ``exclude[users]`` masked.

    Returns (len(users), min(k, n_items)) int64, best first. ``scores`` is modified in place.
    ``pad=True`` puts -1 where a row ran out of finite scores (excluded items included).
    """
    if exclude is not None:
        sub = exclude[users]
        rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
        scores[rows, sub.indices] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    if pad:
        top[~np.isfinite(np.take_along_axis(scores, top, axis=1))] = -1
    return top


def recommend(model: Recommender, users: np.ndarray, k: int, exclude: sp.csr_matrix | None) -> np.ndarray:
    """Top-k dense item indices per user, shape (len(users), k), train items excluded."""
    return top_k_excluding(np.asarray(model.score(users), dtype=np.float32).copy(), users, exclude, k)


def union_candidates(
    top_lists: list[np.ndarray], n_items: int, budget: int, tie_break: Literal["item", "list"] = "item"
) -> np.ndarray:
    """(n_users, budget) int64 union of ranked lists (each (n_users, N_g), -1 = padding), -1 padded.

    Items are ordered by the best rank any list gave them; among equal ranks by item index
    (``tie_break="item"``) or by the position of the list in ``top_lists`` (``"list"``: a
    round-robin merge, rank 0 of every list, then rank 1, ...).
    """
    n_users, n_lists = top_lists[0].shape[0], len(top_lists)
    items = np.concatenate(top_lists, axis=1).astype(np.int64)
    ranks = np.concatenate([np.broadcast_to(np.arange(t.shape[1]), t.shape) for t in top_lists], axis=1)
    if tie_break == "list":
        lists = np.concatenate([np.full(t.shape, p) for p, t in enumerate(top_lists)], axis=1)
        ranks = ranks * n_lists + lists
    valid = items >= 0
    missing = np.iinfo(np.int64).max
    # by (item, key): the first entry of each item holds its best key; its repeats are dropped
    n_keys = int(ranks.max(initial=0)) + 1
    by_item = np.where(valid, items * n_keys + ranks, missing)
    by_item.sort(axis=1)
    kept = by_item != missing
    kept[:, 1:] &= by_item[:, 1:] // n_keys != by_item[:, :-1] // n_keys
    # then by (best key, item), the first ``budget``
    by_key = np.where(kept, (by_item % n_keys) * n_items + by_item // n_keys, missing)
    by_key.sort(axis=1)
    out = np.full((n_users, budget), -1, dtype=np.int64)
    width = min(budget, by_key.shape[1])
    chosen = by_key[:, :width]
    out[:, :width] = np.where(chosen != missing, chosen % max(n_items, 1), -1)
    return out
