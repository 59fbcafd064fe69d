"""One conformance suite for every artwork policy: a new policy needs three lines here."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.artifact import from_artifact, to_artifact
from bandits.policies import EpsilonGreedy, LinearThompson, LinUCB, LogisticGreedy, UniformRandom, make_policy
from bandits.simulate import true_value
from pathways.artifacts.artwork import ArtworkPolicyArtifact


class PolicyConformance:
    """Mixin: subclasses set ``kind`` (and ``learns``); fixtures come from conftest."""

    kind: str

    @pytest.fixture
    def policy(self, world, uniform_log):
        return make_policy(self.kind, world.featurizer).fit(uniform_log)

    @pytest.fixture
    def batch(self, world, uniform_log):
        sub = uniform_log.take(np.arange(300))
        return world.featurizer.transform(sub.context, sub.title_id), sub.n_arms

    def test_probabilities_are_distributions_over_real_arms(self, policy, batch):
        feats, n_arms = batch
        pi = policy.probabilities(feats, n_arms, np.random.default_rng(0))
        valid = np.arange(pi.shape[1])[None, :] < n_arms[:, None]
        assert np.all(pi[valid] > 0) and np.all(pi[valid] <= 1)
        assert np.all(pi[~valid] == 0)
        np.testing.assert_allclose(pi.sum(axis=1), 1.0)

    def test_selected_propensity_is_the_arm_probability(self, policy, batch):
        feats, n_arms = batch
        arms, props = policy.select_batch(feats, n_arms, np.random.default_rng(4))
        pi = policy.probabilities(feats, n_arms, np.random.default_rng(4))  # same draws for Thompson
        assert np.all(arms < n_arms)
        np.testing.assert_allclose(props, pi[np.arange(len(arms)), arms])

    def test_replayable_with_the_same_generator_seed(self, policy, batch):
        feats, n_arms = batch
        a1, p1 = policy.select_batch(feats, n_arms, np.random.default_rng(11))
        a2, p2 = policy.select_batch(feats, n_arms, np.random.default_rng(11))
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(p1, p2)

    def test_single_select_matches_contract(self, policy, batch):
        feats, n_arms = batch
        arm, prop = policy.select(feats[0], int(n_arms[0]), np.random.default_rng(0))
        assert isinstance(arm, int) and 0 <= arm < n_arms[0] and 0 < prop <= 1

    def test_save_load_round_trip(self, policy, batch, tmp_path):
        feats, n_arms = batch
        loaded, version = from_artifact(ArtworkPolicyArtifact.load(to_artifact(policy, "v7").save(tmp_path / "p")))
        assert version == "v7" and loaded.kind == policy.kind and loaded.config == policy.config
        np.testing.assert_allclose(
            loaded.probabilities(feats, n_arms, np.random.default_rng(1)), policy.probabilities(feats, n_arms, np.random.default_rng(1))
        )


class TestUniform(PolicyConformance):
    kind = UniformRandom.kind


class TestEpsilonGreedy(PolicyConformance):
    kind = EpsilonGreedy.kind


class TestLinUCB(PolicyConformance):
    kind = LinUCB.kind


class TestThompson(PolicyConformance):
    kind = LinearThompson.kind


class TestLogistic(PolicyConformance):
    kind = LogisticGreedy.kind


@pytest.mark.parametrize("kind", [EpsilonGreedy.kind, LinUCB.kind, LinearThompson.kind, LogisticGreedy.kind])
def test_learned_policy_beats_uniform(world, uniform_log, kind):
    policy = make_policy(kind, world.featurizer).fit(uniform_log)
    uniform = true_value(world, UniformRandom(featurizer=world.featurizer), n=20_000)
    assert true_value(world, policy, n=20_000) > 1.05 * uniform


def test_floor_keeps_every_arm_possible(world, uniform_log):
    policy = make_policy("epsilon_greedy", world.featurizer, epsilon=0.1).fit(uniform_log)
    sub = uniform_log.take(np.arange(50))
    pi = policy.probabilities(world.featurizer.transform(sub.context, sub.title_id), sub.n_arms)
    valid = np.arange(pi.shape[1])[None, :] < sub.n_arms[:, None]
    np.testing.assert_allclose(pi[valid].min(), (0.1 / sub.n_arms).min())


def test_update_equals_fit_on_concatenation(world, uniform_log):
    a, b = uniform_log.take(np.arange(10_000)), uniform_log.take(np.arange(10_000, 20_000))
    incremental = make_policy("linucb", world.featurizer).fit(a).update(b)
    batch = make_policy("linucb", world.featurizer).fit(uniform_log)
    np.testing.assert_allclose(incremental.theta_, batch.theta_, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [("nope", {}, "kind: unknown policy"), ("linucb", {"epsilon": 0.0}, "epsilon"), ("logistic", {"epsilon": 1.5}, "epsilon")],
)
def test_bad_policy_configs(world, kind, params, match):
    with pytest.raises(ValueError, match=match):
        make_policy(kind, world.featurizer, **params)


@pytest.mark.parametrize("n_groups", [1, 3, 4, 7])
def test_draw_grouped_is_draw_of_the_expanded_rows(n_groups):
    """Same generator calls, same arms and propensities as ``draw(probs[which])``, padded
    (zero-probability) arms included; more than 4 groups fall back to ``draw`` itself."""
    from bandits.policies import draw, draw_grouped

    rng = np.random.default_rng(n_groups)
    probs = rng.random((n_groups, 4))
    probs[:, 3] *= rng.random(n_groups) > 0.5  # some layouts have 3 arms
    probs[0, 1] = 0.0
    probs /= probs.sum(axis=1, keepdims=True)
    which = rng.integers(0, n_groups, 2000)
    for seed in range(5):
        a1, p1 = draw(probs[which], np.random.default_rng(seed))
        a2, p2 = draw_grouped(probs, which, np.random.default_rng(seed))
        assert a1.tolist() == a2.tolist() and p1.tolist() == p2.tolist()
        assert (p2 > 0).all()
