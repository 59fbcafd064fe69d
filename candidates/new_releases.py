""""New releases": titles released within ``new_release_days`` before the snapshot date.

Window: ``as_of_day - new_release_days < release_day <= as_of_day`` (days since epoch; titles
released after the snapshot are not out yet). Order: newest release first, then popularity,
then title id. Scores are ranks (n down to 1).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from candidates.base import CohortRules, finalize, rank_scores
from candidates.block import ProfileBlock, RowBlock, first_allowed_lists, first_fetch, rows_of_lists
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext

SECONDS_PER_DAY = 86_400


def release_window(catalog: Catalog, as_of: datetime, days: int) -> np.ndarray:
    """Bool mask (n_titles,) of titles released in the ``days`` up to and including ``as_of``'s date."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of must be timezone-aware (UTC), got {as_of!r}")
    today = int(as_of.timestamp() // SECONDS_PER_DAY)
    return (catalog.release_days > today - days) & (catalog.release_days <= today)


class NewReleasesSource:
    name = "new_releases"
    serves_cohorts = True
    reads_context_only = True  # nothing of its own per profile (candidates.base.holds)
    evidence = "New releases"

    def __init__(self, catalog: Catalog, popularity: np.ndarray, config: CandidateConfig, as_of: datetime):
        if popularity.shape != (len(catalog),):
            raise ValueError(f"popularity must have shape ({len(catalog)},), got {popularity.shape}")
        self.catalog = catalog
        self.config = config
        pos = np.flatnonzero(release_window(catalog, as_of, config.new_release_days))
        order = np.lexsort((catalog.title_ids[pos], -popularity[pos], -catalog.release_days[pos]))
        self.positions = pos[order]
        ids = catalog.title_ids[self.positions]
        self.row = Candidates(self.name, ids, rank_scores(len(ids)), evidence=self.evidence)
        self.rules = CohortRules(catalog)

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        n = self.config.per_source + len(profile.finished)
        row = self.rules.precut(self.row, self.positions, profile, n)
        row = finalize(row, self.catalog, profile, self.config.per_source)
        return [row] if len(row) else []

    def generate_block(self, block: ProfileBlock) -> RowBlock:
        """``generate`` for a block: the first ``per_source`` allowed titles of the list for every
        profile at once (``first_allowed_lists``)."""
        n, k = len(block.profiles), self.config.per_source
        line, col = first_allowed_lists(block.rules_ok, np.arange(n), self.positions[None, :], None, k,
                                        first_fetch(k, block.finished_count))
        return rows_of_lists(line, col, np.arange(n), self.positions[None, :], None, self.row.scores[None, :],
                             self.name, [self.evidence] * n, [""] * n)
