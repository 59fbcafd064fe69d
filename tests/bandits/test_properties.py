"""Property tests of the two primitives every policy serves through: the floor and the draw."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bandits.policies import draw, greedy_with_floor

A = 6


@st.composite
def rounds(draw_):
    n = draw_(st.integers(1, 30))
    n_arms = draw_(arrays(np.int64, n, elements=st.integers(1, A)))
    scores = draw_(arrays(np.float64, (n, A), elements=st.floats(-1e6, 1e6, allow_nan=False)))
    eps = draw_(st.floats(1e-4, 1.0))
    return scores, n_arms, eps


@settings(max_examples=100, deadline=None)
@given(rounds(), st.integers(0, 2**32 - 1))
def test_floor_gives_distributions_and_draw_respects_them(case, seed):
    scores, n_arms, eps = case
    probs = greedy_with_floor(scores, n_arms, eps)
    valid = np.arange(A)[None, :] < n_arms[:, None]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.all(probs[~valid] == 0)
    assert np.all(probs[valid] >= eps / A - 1e-12)
    best = np.argmax(np.where(valid, scores, -np.inf), axis=1)
    assert np.all(probs[np.arange(len(best)), best] >= 1 - eps)
    arms, props = draw(probs, np.random.default_rng(seed))
    assert np.all(arms < n_arms)
    np.testing.assert_array_equal(props, probs[np.arange(len(arms)), arms])
