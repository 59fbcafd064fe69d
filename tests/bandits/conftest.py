"""Tiny simulated artwork worlds shared by the bandit tests (built once per session: ~ms)."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.log import BanditLog
from bandits.policies import UniformRandom
from bandits.simulate import SimWorld, make_world, simulate_log


@pytest.fixture(scope="session")
def world() -> SimWorld:
    return make_world(n_profiles=300, n_titles=60, seed=3)


@pytest.fixture(scope="session")
def uniform_log(world: SimWorld) -> BanditLog:
    return simulate_log(world, UniformRandom(featurizer=world.featurizer), 20_000, seed=5, version="uniform-v1")


def tiny_log(n: int = 4) -> dict:
    """Keyword arguments of a valid 4-round log, for the bad-input table to break one at a time."""
    return dict(
        context=np.zeros((n, 2), dtype=np.float32),
        profile_id=np.arange(n),
        title_id=np.full(n, 7),
        arm=np.array([0, 1, 2, 0])[:n],
        n_arms=np.full(n, 3),
        propensity=np.full(n, 1 / 3),
        position=np.arange(n),
        policy_version=np.full(n, "v1"),
        reward=np.array([0, 1, 0, 0], dtype=np.float32)[:n],
        context_names=("genre:A", "cast:*"),
    )
