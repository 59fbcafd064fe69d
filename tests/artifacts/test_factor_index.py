"""The one FactorIndex (faiss IndexFlatIP) equals a brute-force numpy top-k, with and without exclusions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pathways.artifacts.factor_index import FactorIndex


def _brute(queries: np.ndarray, items: np.ndarray, k: int, banned: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ items.T
    if banned is not None:
        scores[banned.toarray() > 0] = -np.inf
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, rows, axis=1), rows


@pytest.mark.parametrize("normalize", [False, True])
def test_equals_brute_force_top_k(normalize: bool) -> None:
    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(7, 16)).astype(np.float32)
    scores, rows = FactorIndex(items, normalize=normalize).search(queries, 25)
    if normalize:
        items = items / np.linalg.norm(items, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    want_scores, want_rows = _brute(queries, items, 25)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert rows.dtype == np.int64 and scores.dtype == np.float32


def test_normalize_leaves_the_callers_vectors_alone() -> None:
    items = np.array([[3.0, 4.0], [1.0, 0.0]], np.float32)
    query = np.array([[0.0, 2.0]], np.float32)
    index = FactorIndex(items, normalize=True)
    assert items[0].tolist() == [3.0, 4.0] and query[0].tolist() == [0.0, 2.0]
    np.testing.assert_allclose(np.linalg.norm(index.vectors, axis=1), 1.0, rtol=1e-6)
    scores, rows = index.search(query, 2)
    assert rows.tolist() == [[0, 1]] and np.allclose(scores, [[0.8, 0.0]])


def test_one_vector_query_is_one_row() -> None:
    items = np.eye(4, dtype=np.float32)
    scores, rows = FactorIndex(items).search(items[2], 1)
    assert rows.tolist() == [[2]] and scores.tolist() == [[1.0]]


def test_exclusion_equals_brute_force_with_banned_items_removed() -> None:
    rng = np.random.default_rng(1)
    items, queries = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    banned = sp.random(6, 50, density=0.3, random_state=2, format="csr")
    banned.data[:] = 1.0
    scores, rows = FactorIndex(items).search(queries, 7, exclude=banned)
    want_scores, want_rows = _brute(queries, items, 7, banned)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    for i in range(6):
        assert not set(rows[i]) & set(banned[i].indices)


def test_exclusion_with_an_empty_matrix_equals_no_exclusion() -> None:
    rng = np.random.default_rng(3)
    items, queries = rng.normal(size=(40, 5)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    index = FactorIndex(items)
    plain, excluded = index.search(queries, 9), index.search(queries, 9, exclude=sp.csr_matrix((3, 40)))
    np.testing.assert_array_equal(plain[1], excluded[1])
    np.testing.assert_array_equal(plain[0], excluded[0])


def test_k_larger_than_catalog_is_clipped_and_running_out_pads() -> None:
    banned = sp.csr_matrix(np.array([[1, 1, 0]], dtype=np.float32))
    index = FactorIndex(np.eye(3, dtype=np.float32))
    assert index.search(np.ones((1, 3), np.float32), 10)[1].shape == (1, 3)
    scores, rows = index.search(np.ones((1, 3), np.float32), 10, exclude=banned)
    assert rows.tolist() == [[2, -1, -1]] and np.isneginf(scores[0, 1:]).all()


@pytest.mark.parametrize(
    ("vectors", "match"),
    [(np.zeros((0, 4)), "non-empty"), (np.zeros(5), "non-empty"), (np.array([[np.nan, 1.0]]), "NaN")],
)
def test_bad_item_vectors(vectors: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FactorIndex(vectors)


@pytest.mark.parametrize(
    ("queries", "k", "exclude", "match"),
    [
        (np.ones((2, 3), np.float32), 2, None, r"queries must be \(n, 4\)"),
        (np.ones((2, 4), np.float32), 0, None, "k must be >= 1, got 0"),
        (np.ones((2, 4), np.float32), 2, sp.csr_matrix((3, 4)), r"exclude must be \(n_queries, n_items\)"),
    ],
)
def test_bad_queries(queries: np.ndarray, k: int, exclude: sp.csr_matrix | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FactorIndex(np.eye(4, dtype=np.float32)).search(queries, k, exclude=exclude)
