"""Deterministic A/B allocation: a profile's cell is a pure function of (salt, profile id).

The salted hash maps each profile to a uniform point in [0, 1); cells take consecutive slices
of that interval in the (sorted) order of their names, sized by their shares. Changing the salt
re-randomizes everyone; changing shares moves only the profiles at the slice boundaries.
"""

from __future__ import annotations

import hashlib

import numpy as np

from pathways.config import ExperimentConfig


def bucket(profile_id: int, salt: str) -> float:
    """A uniform point in [0, 1) for ``profile_id``, stable across processes and machines."""
    digest = hashlib.blake2b(f"{salt}:{int(profile_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_cell(profile_id: int, config: ExperimentConfig) -> str:
    """The cell of ``profile_id`` under ``config`` (e.g. 'control' or 'challenger')."""
    u = bucket(profile_id, config.salt)
    edge = 0.0
    names = sorted(config.cells)
    for name in names:
        edge += config.cells[name]
        if u < edge:
            return name
    return names[-1]  # u within rounding of 1.0


def assign_cells(profile_ids: np.ndarray, config: ExperimentConfig) -> np.ndarray:
    """Vectorized ``assign_cell``: an object array of cell names, shape (n,)."""
    return np.array([assign_cell(int(p), config) for p in profile_ids], dtype=object)
