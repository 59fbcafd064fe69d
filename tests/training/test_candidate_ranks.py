"""The candidate rank feature: each candidate's place in its row's stable descending order of scores."""

from __future__ import annotations

import numpy as np
import pytest

from training.models.candidate_features import _rank_of


def _argsort_ranks(scores: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The definition: a stable argsort of the negated scores, inverted."""
    order = np.argsort(-scores, axis=1, kind="stable")
    inverse = np.empty_like(order)
    np.put_along_axis(inverse, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return np.take_along_axis(inverse, cand, axis=1)


@pytest.mark.parametrize("kind", ["distinct", "ties", "special"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranks_equal_a_stable_argsort_with_ties_zeros_infinities_and_nan(kind, dtype):
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((7, 300)).astype(dtype)
    if kind == "ties":
        scores = np.round(scores, 1)
        scores[:, ::3] = 0.0
    if kind == "special":
        scores[:, ::7], scores[:, ::11], scores[:, ::13] = -0.0, 0.0, np.nan
        scores[:, ::17], scores[:, ::19] = np.inf, -np.inf
    cand = rng.integers(0, 300, (7, 40))
    got = _rank_of(scores, cand)
    assert got.dtype == np.int64 and got.shape == cand.shape
    np.testing.assert_array_equal(got, _argsort_ranks(scores, cand))


def test_ranks_of_a_small_row_by_hand():
    scores = np.array([[0.5, 2.0, 0.5, -0.0, 0.0, np.nan]], np.float32)
    # order: 2.0 (1), 0.5 (0), 0.5 (2), -0.0 (3) and 0.0 (4) tie by index, NaN last (5)
    np.testing.assert_array_equal(_rank_of(scores, np.array([[0, 1, 2, 3, 4, 5]])), [[1, 0, 2, 3, 4, 5]])
    assert _rank_of(np.zeros((0, 4), np.float32), np.zeros((0, 2), np.int64)).shape == (0, 2)
