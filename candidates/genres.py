"""Genre rows: the profile's top genres by affinity, each filled with the genre's popular titles.

Affinity: every play in the history adds ``1 / len(genres)`` to each genre of the title (so a
profile that watched three comedies likes Comedy 3x as much as one that watched one). The
``genre_rows`` genres with the highest affinity (ties by name) each give a row of the genre's
titles by popularity (ties by title id), seen titles removed: evidence "Because you like Comedy".

A profile with no history (and the cohort fallback pages) gets the genres with the most plays
among the titles it may see, with the genre's name as evidence.

Kids profiles (``is_kids`` or a ceiling <= ``KIDS_MAX_MATURITY``) only get kids-safe genres:
those in which at least ``kids_safe_share`` of the catalog titles are kids-rated, so that a
kids page never holds a "Horror" row of its two mild titles.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from candidates.base import CohortRules, finalize_at, profile_allowed, seen_titles
from features.schema import KIDS_MAX_MATURITY
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext


def genre_affinity(history: tuple[int, ...], catalog: Catalog) -> dict[str, float]:
    """Genre -> affinity of a history (title ids, any order); titles not in the catalog are ignored."""
    out: dict[str, float] = defaultdict(float)
    for title in history:
        pos = catalog.index.get(int(title))
        if pos is None or not catalog.genres[pos]:
            continue
        share = 1.0 / len(catalog.genres[pos])
        for genre in catalog.genres[pos]:
            out[genre] += share
    return dict(out)


def kids_safe_genres(catalog: Catalog, share: float) -> frozenset[str]:
    """Genres in which at least ``share`` of the titles have maturity <= KIDS_MAX_MATURITY."""
    total: dict[str, int] = defaultdict(int)
    kids: dict[str, int] = defaultdict(int)
    for pos, genres in enumerate(catalog.genres):
        for genre in genres:
            total[genre] += 1
            kids[genre] += int(catalog.maturity[pos] <= KIDS_MAX_MATURITY)
    return frozenset(g for g in total if kids[g] / total[g] >= share)


def is_kids_profile(profile: ProfileContext) -> bool:
    return profile.is_kids or profile.max_maturity_level <= KIDS_MAX_MATURITY


class GenreSource:
    """One row per top genre of the profile, titles by popularity within the genre."""

    name = "genre"
    serves_cohorts = True

    def __init__(self, catalog: Catalog, popularity: np.ndarray, config: CandidateConfig, kids_safe_share: float = 0.5):
        if popularity.shape != (len(catalog),):
            raise ValueError(f"popularity must have shape ({len(catalog)},), got {popularity.shape}")
        self.catalog = catalog
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.config = config
        self.kids_safe = kids_safe_genres(catalog, kids_safe_share)
        self.rules = CohortRules(catalog)
        # Per genre: catalog positions ordered by popularity desc, then title id.
        order = np.lexsort((catalog.title_ids, -self.popularity))
        members: dict[str, list[int]] = defaultdict(list)
        for pos in order:
            for genre in catalog.genres[pos]:
                members[genre].append(int(pos))
        self.members = {g: np.asarray(p, dtype=np.int64) for g, p in members.items()}

    def _eligible(self, profile: ProfileContext) -> list[str]:
        genres = list(self.members)
        return [g for g in genres if g in self.kids_safe] if is_kids_profile(profile) else genres

    def top_genres(self, profile: ProfileContext) -> tuple[list[str], bool]:
        """(the profile's top genres, whether they come from its history)."""
        eligible = self._eligible(profile)
        affinity = genre_affinity(profile.history, self.catalog)
        liked = sorted((g for g in eligible if affinity.get(g, 0.0) > 0), key=lambda g: (-affinity[g], g))
        if liked:
            return liked[: self.config.genre_rows], True
        allowed = self.rules.mask(profile.region, profile.max_maturity_level)
        plays = {g: float(self.popularity[self.members[g]][allowed[self.members[g]]].sum()) for g in eligible}
        return sorted(eligible, key=lambda g: (-plays[g], g))[: self.config.genre_rows], False

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        genres, personal = self.top_genres(profile)
        allowed = profile_allowed(self.rules, profile, seen_titles(profile))  # one mask for all the rows
        rows = []
        for genre in genres:
            pos = self.members[genre]
            cands = Candidates(
                self.name,
                self.catalog.title_ids[pos],
                self.popularity[pos],
                evidence=f"Because you like {genre}" if personal else genre,
                key=genre,
            )
            row = finalize_at(cands, pos, allowed, self.config.per_source, sorted_unique=True)  # by popularity
            if len(row):
                rows.append(row)
        return rows
