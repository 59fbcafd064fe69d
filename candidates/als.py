"""The "Top picks for you" source: titles by ``user_vector . item_vector`` for any factor model.

The factors (``FactorArtifacts``) and the exact faiss index over them (``FactorIndex``) live in
``pathways/artifacts/`` so that training writes them and candidates and serving load them without
importing each other.

``FactorSource`` (``AlsSource`` for ALS; a two-tower model's embeddings plug into the same class)
scores every title by ``user_vector . item_vector``. It over-fetches exactly
enough that the top ``per_source`` allowed titles are always found in one search: the titles the
hard rules block for the profile's cohort plus the profile's seen titles plus ``per_source``.
"""

from __future__ import annotations

import numpy as np

from candidates.base import CohortRules, finalize, seen_titles
from candidates.block import LevelIndexes, ProfileBlock, RowBlock, first_fetch_lines, lookup, search_by_level
from pathways.artifacts.factor_index import FactorIndex
from pathways.artifacts.factors import FactorArtifacts
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext


class FactorSource:
    """Titles by ``user_vector . item_vector`` for any factor model, seen titles and rule-breakers
    removed. ALS uses it as "Top picks for you"; a two-tower model plugs in by putting its
    precomputed user and item embeddings in a ``FactorArtifacts`` container with its own name.
    """

    serves_cohorts = False

    def __init__(
        self,
        artifacts: FactorArtifacts,
        catalog: Catalog,
        config: CandidateConfig,
        name: str = "als",
        evidence: str = "Top picks for you",
    ):
        self.name = name
        self.evidence = evidence
        self.artifacts = artifacts
        self.catalog = catalog
        self.config = config
        self.rules = CohortRules(catalog)
        self.item_positions = catalog.positions(artifacts.title_ids)  # item row -> catalog position
        self.index = FactorIndex(artifacts.item_factors)
        self.levels = LevelIndexes(self.index, self.item_positions, catalog)  # a kids profile searches its titles only
        # A profile whose vector is all zero (folded in without a play in the window) scores every
        # title 0: its "top" titles would be an arbitrary pick among ties (one that even depends on
        # how many results are asked for), so it counts as a profile without factors.
        self.informative = np.any(artifacts.user_factors != 0, axis=1)

    def _has_factors(self, profile_id: int) -> bool:
        row = self.artifacts.profile_row.get(profile_id)
        return row is not None and bool(self.informative[row])

    def holds(self, profile_ids: np.ndarray) -> np.ndarray:
        """Which profiles have (informative) vectors here (``candidates.base.holds``)."""
        return np.fromiter((self._has_factors(int(p)) for p in profile_ids), bool, len(profile_ids))

    def _fetch_k(self, profile: ProfileContext) -> int:
        extra = self.rules.blocked(profile.region, profile.max_maturity_level) + len(seen_titles(profile))
        return min(len(self.index), self.config.per_source + extra)

    def _row(self, profile: ProfileContext, scores: np.ndarray, rows: np.ndarray) -> Candidates:
        valid = rows >= 0
        rows = rows[valid]
        seen = seen_titles(profile)
        cands = Candidates(self.name, self.artifacts.title_ids[rows], scores[valid], self.evidence)
        cands = self.rules.precut(cands, self.item_positions[rows], profile, self.config.per_source + len(seen))
        return finalize(cands, self.catalog, profile, self.config.per_source, exclude=seen)

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        return self.generate_batch([profile])[0]

    def generate_batch(self, profiles: list[ProfileContext]) -> list[list[Candidates]]:
        """One faiss search per index (``LevelIndexes``: a kids profile's titles, or all) for every
        profile with factors; profiles without (or with all-zero) factors get no rows."""
        out: list[list[Candidates]] = [[] for _ in profiles]
        known = [(i, self.artifacts.profile_row[p.profile_id]) for i, p in enumerate(profiles)
                 if self._has_factors(p.profile_id)]
        if not known:
            return out
        levels = np.fromiter((profiles[i].max_maturity_level for i, _ in known), np.int64, len(known))
        for lines, (index, rows_of, _) in self.levels.groups(levels):
            ks = [min(len(index), self._fetch_k(profiles[known[j][0]])) for j in lines.tolist()]
            scores, rows = index.search(self.artifacts.user_factors[[known[j][1] for j in lines.tolist()]], max(ks))
            for j, k, s, r in zip(lines.tolist(), ks, scores, rows):
                r = r[:k] if rows_of is None else np.where(r[:k] >= 0, rows_of[np.maximum(r[:k], 0)], -1)
                row = self._row(profiles[known[j][0]], s[:k], r)  # each profile looks at its own k: batch = single
                if len(row):
                    out[known[j][0]] = [row]
        return out

    def generate_block(self, block: ProfileBlock) -> RowBlock:
        """``generate_batch``'s rows in long form: the first ``per_source`` allowed titles of each
        profile's own ``k`` results, read from faiss searches of the few results they need
        (``search_first_allowed``, in the index of the profile's maturity ceiling: ``search_by_level``),
        not of ``k`` (which counts every title the rules block)."""
        known = np.fromiter((i for i, p in enumerate(block.profiles) if self._has_factors(p.profile_id)), np.int64)
        if not len(known):
            return RowBlock.empty()
        users = np.array([self.artifacts.profile_row[block.profiles[i].profile_id] for i in known], np.int64)
        ks = self.config.per_source + block.blocked[known] + block.seen_count[known]
        levels = np.fromiter((block.profiles[i].max_maturity_level for i in known.tolist()), np.int64, len(known))

        def allowed(lines: np.ndarray, pos: np.ndarray) -> np.ndarray:
            return lookup(block.unseen_ok, known[lines], pos)

        k = self.config.per_source

        def first_k(lines: np.ndarray, positions: np.ndarray) -> np.ndarray:
            return first_fetch_lines(k, block.seen_count[known[lines]], block.allowed_share(positions)[known[lines]])

        pos, scores = search_by_level(self.levels, levels, self.artifacts.user_factors, users, ks, allowed, k, first_k)
        n = len(known)
        return RowBlock.from_mask(pos >= 0, known, pos, scores, self.name, [self.evidence] * n, [""] * n)


class AlsSource(FactorSource):
    """"Top picks for you" from the nightly ALS model."""

    def __init__(self, artifacts: FactorArtifacts, catalog: Catalog, config: CandidateConfig):
        super().__init__(artifacts, catalog, config, name="als", evidence="Top picks for you")
