"""Simulated artwork logs from the world's ground truth: for tests, the bench and ``bandits simulate``.

Because ``world.artwork.ArtworkTruth`` knows P(play) for every variant, the true value of any
policy is computable: ``V(pi) = E_x [ sum_a pi(a | x) q(x, a) ]`` over the round distribution
(profile, title and position drawn uniformly), which is what OPE estimates are judged against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandits.features import ArmFeaturizer
from bandits.log import BanditLog
from bandits.policies import Policy
from world.artwork import ArtworkTruth

GENRES = ("Action", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Horror", "Romance", "SciFi", "Thriller")
MOODS = ("dark", "light", "romantic", "tense", "funny", "epic")
TITLE_ID_OFFSET = 1000


@dataclass(frozen=True)
class SimWorld:
    """A small synthetic catalog with its artwork truth; title ids are ``TITLE_ID_OFFSET + index``."""

    truth: ArtworkTruth
    featurizer: ArmFeaturizer
    title_ids: np.ndarray  # int64 (T,)
    max_position: int

    @property
    def n_profiles(self) -> int:
        return int(self.truth.affinity.shape[0])


@dataclass(frozen=True)
class Rounds:
    """Who saw what where: index arrays (n,) into the world's profiles and titles, and positions."""

    profile_idx: np.ndarray
    title_idx: np.ndarray
    position: np.ndarray


def make_world(n_profiles: int = 2000, n_titles: int = 400, dim: int = 16, seed: int = 0, max_position: int = 40) -> SimWorld:
    """Random tastes, traits, genres and 3-6 themed variants per title; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    tastes = rng.normal(size=(n_profiles, dim))
    traits = rng.normal(size=(n_titles, dim))
    genres = [list(rng.choice(GENRES, size=int(rng.integers(1, 3)), replace=False)) for _ in range(n_titles)]
    themes = []
    for t in range(n_titles):
        variants = []
        for _ in range(int(rng.integers(3, 7))):
            r = rng.random()
            if r < 0.4:
                variants.append(f"genre:{rng.choice(genres[t])}")
            elif r < 0.7:
                variants.append(f"cast:Actor {int(rng.integers(50))}")
            else:
                variants.append(f"mood:{rng.choice(MOODS)}")
        themes.append(variants)
    truth = ArtworkTruth.build(tastes, traits, themes, genres, seed=seed + 1)
    title_ids = TITLE_ID_OFFSET + np.arange(n_titles, dtype=np.int64)
    featurizer = ArmFeaturizer.build(truth.context_names, title_ids, themes)
    return SimWorld(truth, featurizer, title_ids, max_position)


def sample_rounds(world: SimWorld, n: int, rng: np.random.Generator) -> Rounds:
    return Rounds(
        profile_idx=rng.integers(0, world.n_profiles, n),
        title_idx=rng.integers(0, len(world.title_ids), n),
        position=rng.integers(0, world.max_position, n),
    )


def expected_rewards(world: SimWorld, rounds: Rounds) -> np.ndarray:
    """q(x, a) = P(play) for every variant, float64 (n, A_max); 0 on padded arms."""
    return world.truth.arm_play_probabilities(rounds.profile_idx, rounds.title_idx, rounds.position)


def simulate_log(
    world: SimWorld, policy: Policy, n: int, seed: int, version: str = "sim", rounds: Rounds | None = None
) -> BanditLog:
    """``n`` rounds served by ``policy``, rewards drawn from the truth. Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    rounds = rounds or sample_rounds(world, n, rng)
    context = world.truth.context(rounds.profile_idx)
    titles = world.title_ids[rounds.title_idx]
    n_arms = world.featurizer.n_arms(titles)
    arms = np.empty(n, dtype=np.int64)
    props = np.empty(n)
    for lo in range(0, n, 65536):
        sl = slice(lo, lo + 65536)
        arms[sl], props[sl] = policy.select_batch(world.featurizer.transform(context[sl], titles[sl]), n_arms[sl], rng)
    prob = world.truth.play_probability(rounds.profile_idx, rounds.title_idx, arms, rounds.position)
    return BanditLog(
        context=context,
        profile_id=rounds.profile_idx,
        title_id=titles,
        arm=arms,
        n_arms=n_arms,
        propensity=props,
        position=rounds.position,
        policy_version=np.full(n, version),
        reward=(rng.random(n) < prob).astype(np.float32),
        context_names=world.truth.context_names,
    )


def rounds_log(world: SimWorld, rounds: Rounds) -> BanditLog:
    """A log of ``rounds`` with placeholder choices (arm 0, propensity 1, reward 0): contexts only."""
    n = len(rounds.profile_idx)
    titles = world.title_ids[rounds.title_idx]
    return BanditLog(
        context=world.truth.context(rounds.profile_idx),
        profile_id=rounds.profile_idx,
        title_id=titles,
        arm=np.zeros(n, dtype=np.int64),
        n_arms=world.featurizer.n_arms(titles),
        propensity=np.ones(n),
        position=rounds.position,
        policy_version=np.full(n, "none"),
        reward=np.zeros(n, dtype=np.float32),
        context_names=world.truth.context_names,
    )


def log_rounds(world: SimWorld, log: BanditLog) -> Rounds:
    """The rounds of a simulated log (its profile ids are world profile indices)."""
    return Rounds(log.profile_id, log.title_id - TITLE_ID_OFFSET, log.position)


def true_value(world: SimWorld, policy: Policy | None, n: int = 200_000, seed: int = 12345) -> float:
    """V(policy) on ``n`` fresh rounds (exact expectation per round); None means the oracle."""
    rounds = sample_rounds(world, n, np.random.default_rng(seed))
    q = expected_rewards(world, rounds)
    if policy is None:
        return float(q.max(axis=1).mean())
    pi = policy.action_probabilities(rounds_log(world, rounds))
    return float((pi[:, : q.shape[1]] * q).sum(axis=1).mean())
