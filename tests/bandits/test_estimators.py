"""Estimators against known truths: the simulator knows q(x, a) for every arm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bandits.estimators import (
    IPS,
    SNIPS,
    BootstrapConfig,
    DirectMethod,
    DoublyRobust,
    Replay,
    SwitchDR,
    standard_estimators,
)
from bandits.policies import UniformRandom, make_policy
from bandits.reward_model import FixedRewardModel, LogisticRewardModel
from bandits.simulate import expected_rewards, log_rounds, simulate_log, true_value

FAST = BootstrapConfig(n_bootstrap=100)
SETS = 60


@pytest.fixture(scope="module")
def target(world, uniform_log):
    return make_policy("epsilon_greedy", world.featurizer, epsilon=0.1).fit(uniform_log)


@pytest.fixture(scope="module")
def target_value(world, target):
    return true_value(world, target, n=100_000)


def _log(world, n, seed):
    return simulate_log(world, UniformRandom(featurizer=world.featurizer), n, seed=seed)


@pytest.mark.parametrize("logger", ["uniform", "thompson"])
def test_ips_is_unbiased_over_repeated_logs(world, uniform_log, target, target_value, logger):
    """Also under a non-uniform logging policy, whose propensities vary from round to round."""
    policy = make_policy(logger, world.featurizer, epsilon=0.3) if logger != "uniform" else UniformRandom(featurizer=world.featurizer)
    policy.fit(uniform_log.take(np.arange(2000)))
    values = np.array([IPS(FAST).estimate(simulate_log(world, policy, 3000, seed=100 + s), target).value for s in range(60)])
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - target_value) < 3 * se


def test_snips_stays_within_reward_range(world, target):
    for seed in range(20):  # short logs, where plain IPS can leave [0, 1]
        est = SNIPS(FAST).estimate(_log(world, 60, 300 + seed), target)
        assert 0.0 <= est.lo <= est.value <= est.hi <= 1.0


def test_dr_is_exact_when_its_reward_model_is_exact(world, target):
    log = _log(world, 2000, 7)
    q = expected_rewards(world, log_rounds(world, log))
    noise_free = replace(log, reward=q[np.arange(len(log)), log.arm].astype(np.float32))
    pi = target.action_probabilities(log)
    truth_on_sample = float((pi * q).sum(axis=1).mean())
    est = DoublyRobust(FAST, FixedRewardModel(q)).estimate(noise_free, target)
    assert est.value == pytest.approx(truth_on_sample, rel=1e-5)


def test_dr_with_exact_model_is_unbiased_on_noisy_rewards(world, target, target_value):
    values = []
    for s in range(SETS):
        log = _log(world, 2000, 500 + s)
        q = expected_rewards(world, log_rounds(world, log))
        values.append(DoublyRobust(FAST).estimate(log, target, q_hat=q).value)
    se = np.std(values, ddof=1) / np.sqrt(SETS)
    assert abs(np.mean(values) - target_value) < 3 * se


def test_intervals_cover_at_about_nominal_rate(world, target, target_value):
    covered = {"IPS": 0, "DR": 0}
    n_sets = 40
    for s in range(n_sets):
        log = _log(world, 2000, 1000 + s)
        q = LogisticRewardModel(world.featurizer, title_effects=False, seed=s).fit_predict(log)
        for est in (IPS(BootstrapConfig(100, seed=s)), DoublyRobust(BootstrapConfig(100, seed=s))):
            e = est.estimate(log, target, q_hat=q)
            covered[e.estimator] += e.lo <= target_value <= e.hi
    assert covered["IPS"] / n_sets >= 0.8
    assert covered["DR"] / n_sets >= 0.8


def test_replay_agrees_with_ips_on_uniform_logs(world, target, target_value):
    log = _log(world, 20_000, 42)
    replay = Replay(FAST).estimate(log, target)
    assert replay.lo <= target_value <= replay.hi
    assert 0 < replay.ess < len(log)


def test_switch_dr_drops_large_weight_corrections(world, target):
    log = _log(world, 2000, 9)
    q = np.full((len(log), world.featurizer.max_arms), 0.02)
    dm = DirectMethod(FAST).estimate(log, target, q_hat=q).value
    assert SwitchDR(tau=1e-6).estimate(log, target, q_hat=q).value == pytest.approx(dm)
    assert SwitchDR(tau=1e6).estimate(log, target, q_hat=q).value == pytest.approx(DoublyRobust(FAST).estimate(log, target, q_hat=q).value)


def test_estimates_are_seeded_and_ess_bounded(world, target):
    log = _log(world, 1000, 3)
    q = np.full((len(log), world.featurizer.max_arms), 0.03)
    for est in standard_estimators(FixedRewardModel(q), FAST):
        a, b = est.estimate(log, target), est.estimate(log, target)
        assert a == b
        assert 0 < a.ess <= len(log) and a.lo <= a.hi


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda log: np.zeros((len(log) - 1, 6)), "target: expected probabilities"),
        (lambda log: np.full((len(log), 6), 0.5), "target: each row must be a distribution"),
    ],
)
def test_bad_targets_raise(world, make, match):
    log = _log(world, 100, 1)
    with pytest.raises(ValueError, match=match):
        IPS(FAST).estimate(log, make(log))


def test_model_based_estimators_need_a_model(world, target):
    with pytest.raises(ValueError, match="DR: needs a reward_model or q_hat"):
        DoublyRobust(FAST).estimate(_log(world, 100, 1), target)
