"""FaissRetriever (IndexFlatIP) equals brute-force inner-product top-k, with and without exclusion."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from training.models.faiss_index import FaissRetriever


def _brute(users: np.ndarray, items: np.ndarray, k: int, banned: sp.csr_matrix | None = None) -> np.ndarray:
    scores = users @ items.T
    if banned is not None:
        scores[banned.toarray() > 0] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_equals_brute_force_top_k():
    rng = np.random.default_rng(0)
    items, users = rng.normal(size=(200, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    scores, found = FaissRetriever(items).search(users, 10)
    np.testing.assert_array_equal(found, _brute(users, items, 10))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_exclusion_removes_banned_items_and_keeps_k():
    rng = np.random.default_rng(1)
    items, users = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    banned = sp.random(6, 50, density=0.3, random_state=2, format="csr")
    banned.data[:] = 1.0
    _, found = FaissRetriever(items).search(users, 7, exclude=banned, users=np.arange(6))
    np.testing.assert_array_equal(found, _brute(users, items, 7, banned))
    for row in range(6):
        assert not set(found[row]) & set(banned[row].indices)


def test_k_larger_than_catalog_is_clipped_and_runs_out_pads():
    items = np.eye(3, dtype=np.float32)
    banned = sp.csr_matrix(np.array([[1, 1, 0]], dtype=np.float32))
    scores, found = FaissRetriever(items).search(np.ones((1, 3), np.float32), 10, exclude=banned, users=np.array([0]))
    assert found.tolist() == [[2, -1, -1]] and np.isneginf(scores[0, 1:]).all()


@pytest.mark.parametrize(
    "vectors, match",
    [(np.zeros((0, 4)), "non-empty"), (np.zeros(5), "non-empty"), (np.array([[np.nan, 1.0]]), "NaN")],
)
def test_bad_item_vectors(vectors, match):
    with pytest.raises(ValueError, match=match):
        FaissRetriever(vectors)


def test_bad_queries():
    retriever = FaissRetriever(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="user_vectors"):
        retriever.search(np.ones((2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="k must"):
        retriever.search(np.ones((2, 4), np.float32), 0)
    with pytest.raises(ValueError, match="users"):
        retriever.search(np.ones((2, 4), np.float32), 2, exclude=sp.csr_matrix((2, 4)))
