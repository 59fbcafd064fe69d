"""Worlds shared by the world tests, generated once per process (they are deterministic)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from pathways.config import WorldConfig
from world.generator import World, generate_world
from world.sizes import preset


@cache
def tiny(seed: int = 7) -> World:
    return generate_world(preset("tiny", WorldConfig(seed=seed)))


@cache
def small() -> World:
    """~200 titles, ~500 profiles, 14 days: enough events for behavioural statistics."""
    return generate_world(preset("small", WorldConfig(seed=5)))


@cache
def frames(which: str = "small") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(events, titles, profiles) of a cached world as pandas frames."""
    w = small() if which == "small" else tiny()
    return w.events.to_pandas(), w.titles.to_pandas(), w.profiles.to_pandas()


def affinity(w: World, profile_ids: np.ndarray, title_ids: np.ndarray) -> np.ndarray:
    """True taste . traits (n,) of (profile, title) id pairs."""
    p = np.array([w.profile_index[int(i)] for i in profile_ids], dtype=np.int64)
    t = np.array([w.title_index[int(i)] for i in title_ids], dtype=np.int64)
    return (w.profile_tastes[p] * w.title_traits[t]).sum(axis=1)
