"""Replayable exploration: the generator for one decision comes from (base seed, profile, request)."""

from __future__ import annotations

import hashlib

import numpy as np


def decision_rng(base_seed: int, profile_id: int, request_id: str) -> np.random.Generator:
    """A generator that depends only on its three inputs, so a served decision can be replayed.

    >>> a = decision_rng(7, 42, "req-1").random(); b = decision_rng(7, 42, "req-1").random()
    >>> a == b
    True
    """
    digest = hashlib.blake2b(request_id.encode("utf-8"), digest_size=16).digest()
    words = np.frombuffer(digest, dtype=np.uint32).tolist()
    seq = np.random.SeedSequence([int(base_seed) & 0xFFFFFFFF, int(profile_id) & 0xFFFFFFFFFFFFFFFF, *words])
    return np.random.Generator(np.random.PCG64(seq))
