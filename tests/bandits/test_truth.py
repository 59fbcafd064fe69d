"""The world's artwork truth: multipliers average 1, probabilities valid, the effect is real."""

from __future__ import annotations

import numpy as np
import pytest

from world.artwork import ArtworkTruth


def test_multiplier_mean_is_one_over_uniform_arms(world):
    rng = np.random.default_rng(0)
    p, t = rng.integers(0, 300, 500), rng.integers(0, 60, 500)
    mult = world.truth.arm_multipliers(p, t)
    n_arms = world.truth.n_arms[t]
    assert np.all(mult[world.truth.arm_mask[t]] > 0)
    np.testing.assert_allclose(mult.sum(axis=1) / n_arms, 1.0, rtol=1e-9)


def test_play_probability_in_unit_interval_and_matches_all_arms(world):
    rng = np.random.default_rng(1)
    p, t, pos = rng.integers(0, 300, 400), rng.integers(0, 60, 400), rng.integers(0, 40, 400)
    arms = rng.integers(0, world.truth.n_arms[t])
    prob = world.truth.play_probability(p, t, arms, pos)
    assert np.all((prob > 0) & (prob < 1))
    np.testing.assert_allclose(prob, world.truth.arm_play_probabilities(p, t, pos)[np.arange(400), arms])


def test_oracle_beats_uniform_clearly(world):
    rng = np.random.default_rng(2)
    p, t, pos = rng.integers(0, 300, 5000), rng.integers(0, 60, 5000), rng.integers(0, 40, 5000)
    q = world.truth.arm_play_probabilities(p, t, pos)
    uniform = (q.sum(axis=1) / world.truth.n_arms[t]).mean()
    assert q.max(axis=1).mean() > 1.3 * uniform


def test_context_is_noisy_but_informative(world):
    obs, true = world.truth.context(np.arange(300)), world.truth.affinity
    assert obs.shape == true.shape and not np.allclose(obs, true)
    assert np.corrcoef(obs.ravel(), true.ravel())[0, 1] > 0.8


def test_position_lowers_probability(world):
    p, t, a = np.zeros(2, int), np.zeros(2, int), np.zeros(2, int)
    prob = world.truth.play_probability(p, t, a, np.array([0, 30]))
    assert prob[0] > prob[1]


def test_bad_artwork_index_raises(world):
    with pytest.raises(ValueError, match="artwork_idx"):
        world.truth.play_multiplier(np.array([0]), np.array([0]), np.array([99]))


def test_build_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="artwork_themes"):
        ArtworkTruth.build(np.ones((3, 2)), np.ones((2, 2)), [["genre:A"]], [["A"], ["A"]], seed=0)
