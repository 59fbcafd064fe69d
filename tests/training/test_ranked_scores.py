"""One sort per generator block: ``RankedScores`` top lists and ranks, and the union of top lists."""

from __future__ import annotations

import numpy as np
import pytest

from training.models.candidate_features import RankedScores
from training.recommender import union_candidates


def _top_by_definition(scores: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Stable descending order (ties by item index), seen and non-finite items left out, -1 padded."""
    out = np.full((len(scores), min(k, scores.shape[1])), -1)
    for row, s in enumerate(scores):
        order = [i for i in np.argsort(-s, kind="stable") if not seen[row, i] and np.isfinite(s[i])][: out.shape[1]]
        out[row, : len(order)] = order
    return out


@pytest.mark.parametrize("kind", ["distinct", "few_ties", "ties", "special", "shared", "mostly_zero"])
def test_top_is_the_stable_descending_order_without_seen_or_non_finite_titles(kind):
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((9, 120)).astype(np.float32)
    if kind == "few_ties":  # a dense row whose candidates tie on a few values: counted value by value
        scores[:, 40:50] = scores[:, :1]
        scores[:, 60:63] = 1.5
    if kind == "ties":  # more tied values than are counted one by one: a full sort
        scores = np.round(scores, 1)
    if kind == "special":
        scores[:, ::7], scores[:, ::11], scores[:, ::13] = -0.0, 0.0, np.nan
        scores[:, ::17], scores[:, ::19] = np.inf, -np.inf
    if kind == "mostly_zero":  # EASE / ALS / item-kNN: most titles score exactly 0 (sorted as one run)
        scores[rng.random(scores.shape) < 0.85] = 0.0
        scores[:, ::9] = -0.0
    if kind == "shared":  # the same row for everyone (popularity): sorted once
        scores = np.repeat(np.round(scores[:1], 1), 9, axis=0)
    seen = rng.random(scores.shape) < 0.2
    seen[0] = True  # a user who saw everything gets padding only
    ranked = RankedScores(scores)
    assert len(ranked.rows) == (1 if kind == "shared" else 9)
    for k in (1, 30, 500):
        np.testing.assert_array_equal(ranked.top(seen, k), _top_by_definition(scores, seen, k))
    cand = rng.integers(0, 120, (9, 25))
    expected = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1)
    np.testing.assert_array_equal(ranked.ranks(cand), np.take_along_axis(expected, cand, axis=1))
    if kind != "special":  # (inf and -inf in a row: a NaN mean, as numpy's)
        np.testing.assert_array_equal(ranked.mean, scores.mean(1, keepdims=True))


def _union_by_definition(tops: list[np.ndarray], budget: int, tie_break: str) -> np.ndarray:
    out = np.full((len(tops[0]), budget), -1)
    for row in range(len(tops[0])):
        best: dict[int, int] = {}
        for position, top in enumerate(tops):
            for rank, item in enumerate(top[row]):
                if item >= 0:
                    key = rank * len(tops) + position if tie_break == "list" else rank
                    best[int(item)] = min(best.get(int(item), key), key)
        chosen = sorted(best, key=lambda i: (best[i], i))[:budget]
        out[row, : len(chosen)] = chosen
    return out


@pytest.mark.parametrize("tie_break", ["item", "list"])
@pytest.mark.parametrize("budget", [3, 40, 200])
def test_union_equals_its_definition(tie_break, budget):
    rng = np.random.default_rng(budget)
    tops = []
    for width in (30, 12, 30):
        top = np.stack([rng.permutation(50)[:width] for _ in range(6)])
        top[rng.random(top.shape) < 0.1] = -1
        tops.append(top)
    np.testing.assert_array_equal(union_candidates(tops, 50, budget, tie_break), _union_by_definition(tops, budget, tie_break))


@pytest.mark.parametrize("run_value", [0.0, -0.0, 5.0, -5.0, np.nan, np.inf])
@pytest.mark.parametrize("share", [0.0, 0.2, 0.3, 0.9, 1.0])
def test_a_row_with_one_value_on_most_titles_ranks_as_a_full_sort(run_value, share):
    """The run's titles are never sorted: wherever the run stands in the order (first, last,
    inside), whatever its value, ranks and top lists are those of the stable descending order."""
    rng = np.random.default_rng(int(share * 10))
    scores = rng.standard_normal((4, 600)).astype(np.float32)
    scores[rng.random(scores.shape) < share] = run_value
    scores[:, ::97] = 0.0  # a second repeated value
    scores[1, ::5] = run_value  # rows with runs of different lengths
    seen = rng.random(scores.shape) < 0.1
    ranked = RankedScores(scores)
    cand = np.concatenate([rng.integers(0, 600, (4, 50)), np.flatnonzero(scores[0] == run_value)[None, :4].repeat(4, 0)], axis=1)
    expected = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1)
    np.testing.assert_array_equal(ranked.ranks(cand), np.take_along_axis(expected, cand, axis=1))
    for k in (1, 40, 600):
        np.testing.assert_array_equal(ranked.top(seen, k), _top_by_definition(scores, seen, k))


def test_std_given_the_mean_has_numpys_bits():
    """``RankedScores.std`` hands numpy its own mean; the result must be bit for bit ``np.std``'s
    (the features of a fitted ranker must not move), across numpy's pairwise-sum block sizes."""
    rng = np.random.default_rng(2)
    for n in (7, 128, 129, 1_000, 20_000):
        scores = (rng.standard_normal((5, n)) * rng.uniform(0.1, 30, (5, 1))).astype(np.float32) + 3
        ranked = RankedScores(scores)
        np.testing.assert_array_equal(ranked.std, scores.std(1, keepdims=True) + 1e-6)
        np.testing.assert_array_equal(ranked.mean, scores.mean(1, keepdims=True))
