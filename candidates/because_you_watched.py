""""Because you watched X": titles similar to the profile's most recent distinct watches.

Similarity is the cosine of ALS item factors, searched exactly with faiss over unit vectors.
Anchors are the ``because_you_watched_rows`` most recent distinct titles of the profile's
history that have factors and are in the catalog (one row each, key = the anchor's id). A row
holds neither the anchor nor any other title the profile already played or finished.
"""

from __future__ import annotations

import numpy as np

from candidates.base import CohortRules, finalize_at, profile_allowed, seen_titles
from candidates.block import LevelIndexes, ProfileBlock, RowBlock, first_fetch_lines, lookup, search_by_level
from pathways.artifacts.factor_index import FactorIndex
from pathways.artifacts.factors import FactorArtifacts
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext


def recent_anchors(history: tuple[int, ...], n: int, usable: dict[int, int] | set[int]) -> list[int]:
    """The ``n`` most recent distinct titles of ``history`` (oldest first) found in ``usable``."""
    anchors: list[int] = []
    for title in reversed(history):
        title = int(title)
        if title in usable and title not in anchors:
            anchors.append(title)
            if len(anchors) == n:
                break
    return anchors


class BecauseYouWatchedSource:
    """One row per recent anchor title, titles ranked by cosine similarity to the anchor."""

    name = "because_you_watched"
    serves_cohorts = False
    reads_context_only = True  # nothing of its own per profile (candidates.base.holds)

    def __init__(self, artifacts: FactorArtifacts, catalog: Catalog, config: CandidateConfig):
        self.artifacts = artifacts
        self.catalog = catalog
        self.config = config
        self.rules = CohortRules(catalog)
        self.item_positions = catalog.positions(artifacts.title_ids)  # item row -> catalog position
        self.index = FactorIndex(artifacts.item_factors, normalize=True)
        self.levels = LevelIndexes(self.index, self.item_positions, catalog)  # a kids profile searches its titles only
        self._usable = {t: r for t, r in artifacts.title_row.items() if t in catalog.index}

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        return self.generate_batch([profile])[0]

    def generate_batch(self, profiles: list[ProfileContext]) -> list[list[Candidates]]:
        """All anchors of all profiles in one faiss search per index (``LevelIndexes``: a kids
        profile's titles, or all)."""
        anchors = [recent_anchors(p.history, self.config.because_you_watched_rows, self._usable) for p in profiles]
        flat = [(i, a) for i, anchor_list in enumerate(anchors) for a in anchor_list]
        out: list[list[Candidates]] = [[] for _ in profiles]
        if not flat:
            return out
        ks = [
            self.config.per_source + 1 + len(seen_titles(p)) + self.rules.blocked(p.region, p.max_maturity_level)
            for p in profiles
        ]
        allowed = {i: profile_allowed(self.rules, profiles[i], seen_titles(profiles[i])) for i, _ in flat}
        levels = np.fromiter((profiles[i].max_maturity_level for i, _ in flat), np.int64, len(flat))
        for lines, (index, rows_of, _) in self.levels.groups(levels):
            queries = self.index.vectors[[self._usable[flat[j][1]] for j in lines.tolist()]]
            scores, rows = index.search(queries, max(ks[flat[j][0]] for j in lines.tolist()))
            for j, s, r in zip(lines.tolist(), scores, rows):
                i, anchor = flat[j]
                s, r = s[: ks[i]], r[: ks[i]]  # each profile looks at its own k: batch = single
                valid = r >= 0
                r = r[valid] if rows_of is None else rows_of[r[valid]]
                cands = Candidates(
                    self.name,
                    self.artifacts.title_ids[r],
                    s[valid],
                    evidence=f"Because you watched {self.catalog.name(anchor)}",
                    key=str(anchor),
                )
                pos = self.item_positions[r]
                pos = np.where(pos == self.catalog.index[anchor], -1, pos)  # the anchor itself is not shown
                row = finalize_at(cands, pos, allowed[i], self.config.per_source, sorted_unique=True)  # faiss order
                if len(row):
                    out[i].append(row)
        return out

    def generate_block(self, block: ProfileBlock) -> RowBlock:
        """``generate_batch``'s rows in long form: one faiss search per index for every anchor of
        the block (``search_by_level``), the first ``per_source`` allowed titles of each anchor's
        results as one mask."""
        n = self.config.because_you_watched_rows
        anchors = [recent_anchors(p.history, n, self._usable) for p in block.profiles]
        prof = np.fromiter((i for i, a in enumerate(anchors) for _ in a), np.int64)
        flat = [a for al in anchors for a in al]
        if not flat:
            return RowBlock.empty()
        ks = (self.config.per_source + 1 + block.seen_count + block.blocked)[prof]
        anchor_pos = np.fromiter((self.catalog.index[a] for a in flat), np.int64, len(flat))
        anchor_row = np.fromiter((self._usable[a] for a in flat), np.int64, len(flat))
        levels = np.fromiter((p.max_maturity_level for p in block.profiles), np.int64, len(block.profiles))[prof]

        def allowed(lines: np.ndarray, pos: np.ndarray) -> np.ndarray:  # the anchor itself is not shown
            return lookup(block.unseen_ok, prof[lines], pos) & (pos != anchor_pos[lines][:, None])

        k = self.config.per_source

        def first_k(lines: np.ndarray, positions: np.ndarray) -> np.ndarray:
            return first_fetch_lines(k + 1, block.seen_count[prof[lines]], block.allowed_share(positions)[prof[lines]])

        # Each distinct anchor is searched once per index and round (anchors repeat across a block's profiles).
        pos, scores = search_by_level(self.levels, levels, self.index.vectors, anchor_row, ks, allowed, k, first_k)
        return RowBlock.from_mask(pos >= 0, prof, pos, scores, self.name,
                                  [f"Because you watched {self.catalog.name(a)}" for a in flat], [str(a) for a in flat])


def similar_titles(index: FactorIndex, artifacts: FactorArtifacts, title_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` titles most similar to ``title_id`` (itself excluded): (title ids, cosines), each (k,)."""
    row = artifacts.title_row.get(int(title_id))
    if row is None:
        raise KeyError(f"title_id {title_id} has no ALS factors")
    scores, rows = index.search(index.vectors[row], k + 1)
    keep = (rows[0] >= 0) & (rows[0] != row)
    return artifacts.title_ids[rows[0][keep]][:k], scores[0][keep][:k]
