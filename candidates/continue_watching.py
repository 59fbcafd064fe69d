""""Continue watching": titles in progress, most recently watched first.

A title qualifies when ``continue_min_fraction <= fraction < finished_fraction`` and the profile
has not finished it. Scores are ranks (n for the most recent, down to 1), since epoch seconds do
not fit float32 scores exactly.
"""

from __future__ import annotations

import numpy as np

from candidates.base import finalize, rank_scores
from candidates.block import ProfileBlock, RowBlock, finalize_long
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext


class ContinueWatchingSource:
    name = "continue_watching"
    serves_cohorts = False
    reads_context_only = True  # nothing of its own per profile (candidates.base.holds)
    evidence = "Continue watching"

    def __init__(self, catalog: Catalog, config: CandidateConfig):
        self.catalog = catalog
        self.config = config

    def in_progress(self, profile: ProfileContext) -> list[int]:
        """Qualifying title ids, most recent first (ties by title id)."""
        lo, hi = self.config.continue_min_fraction, self.config.finished_fraction
        titles = [int(t) for t, f in profile.in_progress.items() if lo <= f < hi and int(t) not in profile.finished]
        return sorted(titles, key=lambda t: (-profile.in_progress_ts.get(t, float("-inf")), t))

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        titles = self.in_progress(profile)
        if not titles:
            return []
        cands = Candidates(self.name, np.asarray(titles, np.int64), rank_scores(len(titles)), evidence=self.evidence)
        row = finalize(cands, self.catalog, profile, self.config.per_source)
        return [row] if len(row) else []

    def generate_block(self, block: ProfileBlock) -> RowBlock:
        """``generate`` for a block: each profile's titles in progress, the rules applied at once."""
        lists = [(i, self.in_progress(p)) for i, p in enumerate(block.profiles) if p.in_progress]
        lists = [(i, t) for i, t in lists if t]
        prof = np.fromiter((i for i, _ in lists), np.int64, len(lists))
        pos = [self.catalog.positions(np.asarray(t, np.int64)) for _, t in lists]
        n = len(lists)
        return finalize_long(block, prof, pos, [rank_scores(len(t)) for _, t in lists], block.rules_ok,
                             self.config.per_source, self.name, [self.evidence] * n, [""] * n)
