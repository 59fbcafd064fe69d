"""A row computed offline for each profile (e.g. the learning-to-rank top row), served as is.

``lists`` maps profile id -> (title ids, scores), best first: ``TopLists.load(path).lists`` or a
``TopListsReader`` (``pathways/artifacts/top_lists.py``) of the file the nightly job wrote. The row still goes through
the hard rules and drops titles the profile already played.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from candidates.base import finalize
from candidates.block import ProfileBlock, RowBlock, finalize_flat
from pathways.artifacts.top_lists import flat_lists
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext


class PrecomputedSource:
    """One row per profile from ``lists``; profiles without a list get no row."""

    serves_cohorts = False

    def __init__(self, lists: Mapping[int, tuple[np.ndarray, np.ndarray]], catalog: Catalog, config: CandidateConfig,
                 name: str, evidence: str):
        self.lists = lists
        self.catalog = catalog
        self.config = config
        self.name = name
        self.evidence = evidence

    def holds(self, profile_ids: np.ndarray) -> np.ndarray:
        """Which profiles have a non-empty list here (``candidates.base.holds``)."""
        return np.diff(flat_lists(self.lists, np.asarray(profile_ids, np.int64))[0]) > 0

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        got = self.lists.get(int(profile.profile_id))
        if got is None or len(got[0]) == 0:
            return []
        cands = Candidates(self.name, got[0], got[1], evidence=self.evidence)
        row = finalize(cands, self.catalog, profile, self.config.per_source, exclude=profile.history)
        return [row] if len(row) else []

    def generate_block(self, block: ProfileBlock) -> RowBlock:
        """``generate`` for a block: every profile's list read at once (``flat_lists``: one look-up
        per row group of a ``TopListsReader``), through the rules and the history at once."""
        ids = np.fromiter((p.profile_id for p in block.profiles), np.int64, len(block.profiles))
        bounds, titles, scores = flat_lists(self.lists, ids)
        lengths = np.diff(bounds)
        prof = np.flatnonzero(lengths)  # profiles without a list (or with an empty one) get no row
        offsets = np.zeros(len(prof) + 1, np.int64)
        np.cumsum(lengths[prof], out=offsets[1:])
        n = len(prof)
        return finalize_flat(block, prof, offsets, self.catalog.positions(titles), scores, block.unseen_ok,
                             self.config.per_source, self.name, [self.evidence] * n, [""] * n)
