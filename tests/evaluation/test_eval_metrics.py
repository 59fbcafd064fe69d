"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from training.evaluation import metrics as M
from training.recommender import union_candidates

TOPK = np.array([[3, 1, 4, 0], [2, 5, 6, 7]])
TRUTH = sp.csr_matrix(([1.0] * 4, ([0, 0, 0, 1], [1, 0, 9, 2])), shape=(2, 10))
N_REL = np.array([3, 1])


@pytest.fixture
def hits() -> np.ndarray:
    return M.hit_matrix(TOPK, np.array([0, 1]), TRUTH)


def test_hit_matrix(hits):
    assert hits.tolist() == [[False, True, False, True], [True, False, False, False]]


def test_hit_matrix_ignores_padding_and_maps_users():
    padded = np.array([[-1, 2], [0, -1]])  # -1 would alias the previous row's last item if unguarded
    truth = sp.csr_matrix(([1.0, 1.0], ([0, 1], [9, 2])), shape=(2, 10))
    assert M.hit_matrix(padded, np.array([1, 0]), truth).tolist() == [[False, True], [False, False]]


def test_recall_divides_by_min_k_and_test_size(hits):
    assert M.recall_at_k(hits, N_REL, 4) == pytest.approx((2 / 3 + 1) / 2)
    assert M.recall_at_k(hits, N_REL, 2) == pytest.approx((1 / 2 + 1) / 2)


def test_ndcg_binary_gains(hits):
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(hits, N_REL, 4) == pytest.approx((dcg / idcg + 1.0) / 2)
    assert M.ndcg_at_k(hits, N_REL, 1) == pytest.approx(0.5)
    np.testing.assert_allclose(M.ndcg_per_user(hits, N_REL, 4), [dcg / idcg, 1.0])  # each user's, not the mean


def test_map(hits):
    ap0 = (1 / 2 + 2 / 4) / 3
    assert M.map_at_k(hits, N_REL, 4) == pytest.approx((ap0 + 1.0) / 2)


def test_coverage():
    assert M.coverage_at_k(TOPK, 10, 4) == pytest.approx(0.8)
    assert M.coverage_at_k(TOPK, 10, 1) == pytest.approx(0.2)


def test_novelty_is_mean_self_information():
    popularity = np.array([4.0, 2.0, 0.0, 1.0])
    topk = np.array([[0, 1], [2, 3]])
    expected = np.mean([-math.log2(4 / 4), -math.log2(2 / 4), -math.log2(1 / 4), -math.log2(1 / 4)])
    assert M.novelty_at_k(topk, popularity, n_users=4, k=2) == pytest.approx(expected)


def test_popularity_percentile_and_bias():
    popularity = np.array([4.0, 2.0, 0.0, 1.0])
    assert M.popularity_percentile(popularity).tolist() == [0.75, 0.5, 0.0, 0.25]
    assert M.mean_popularity_percentile(np.array([[0, 1]]), popularity, 2) == pytest.approx(0.625)


def test_gini():
    assert M.gini_at_k(np.array([[0, 1], [2, 3]]), 4, 2) == pytest.approx(0.0)
    assert M.gini_at_k(np.array([[0], [0]]), 4, 1) == pytest.approx(3 / 4)


def test_intra_list_diversity_by_genre():
    genres = M.genre_matrix([["A"], ["A", "B"], [], ["B"]])
    lists = np.array([[0, 1, 3], [2, 0, 1]])
    assert M.intra_list_diversity(lists, genres, 3) == pytest.approx(((0.5 + 1 + 0.5) / 3 + (1 + 1 + 0.5) / 3) / 2)
    assert M.intra_list_diversity(np.array([[2, 2]]), genres, 2) == 0.0  # two genre-less items: identical


def test_round_robin_union():
    merged = union_candidates([np.array([[1, 2, 3]]), np.array([[2, 4, 5]])], 6, 4, tie_break="list")
    assert merged.tolist() == [[1, 2, 4, 3]]
    short = union_candidates([np.array([[1, 2]]), np.array([[2, 1]])], 6, 4, tie_break="list")
    assert short.tolist() == [[1, 2, -1, -1]]


def test_union_by_item_breaks_rank_ties_by_item_index():
    merged = union_candidates([np.array([[5, 2, -1]]), np.array([[3, 5, 0]])], 6, 4)
    assert merged.tolist() == [[3, 5, 2, 0]]


def test_ndcg_recall_known_values():
    truth = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [1, 2, 3])), shape=(2, 5))
    m = M.ndcg_recall(np.array([[1, 0, 2], [0, 4, 2]]), np.array([0, 1]), truth, 3)
    ndcg0 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert m["ndcg@3"] == pytest.approx(ndcg0 / 2)
    assert m["recall@3"] == pytest.approx(0.5)
