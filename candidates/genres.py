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
from dataclasses import replace

import numpy as np

from candidates.base import CohortRules, finalize_at, profile_allowed, seen_titles
from candidates.block import (
    ProfileBlock,
    RowBlock,
    first_allowed_lists,
    first_fetch,
    gather_rows,
    nonzero_2d,
    padded,
    pick,
    rows_of_lists,
)
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
    reads_context_only = True  # nothing of its own per profile (candidates.base.holds)

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
        # For ``generate_block``: genres by name, each title's genres and shares (CSR over positions).
        self._names = sorted(self.members)
        column = {g: j for j, g in enumerate(self._names)}
        self._column = column
        counts = np.fromiter((len(gs) for gs in catalog.genres), np.int64, len(catalog))
        self._genre_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # title genres as CSR
        self._genre_flat = np.fromiter((column[g] for gs in catalog.genres for g in gs), np.int64,
                                       int(self._genre_offsets[-1]))
        self._safe = np.array([g in self.kids_safe for g in self._names], dtype=bool)
        self._table = padded([self.members[g] for g in self._names])  # (genres, longest): members by name
        self._scores = self.popularity[self._table]  # past a list's end: never read
        self._evidence = tuple(f"Because you like {g}" for g in self._names) + tuple(self._names)  # personal, cohort
        self._fallback: dict[tuple[bool, str, int], list[str]] = {}

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

    def _liked_block(self, block: ProfileBlock) -> np.ndarray:
        """(P, n_genres) float64 affinity of each profile (``genre_affinity``, summed in history order)."""
        n = len(self._names)
        pos = self.catalog.positions(block.hist_ids)
        prof = block.hist_profile[pos >= 0]
        pos = pos[pos >= 0]
        idx, offsets = gather_rows(self._genre_offsets, pos)  # each history title's genres, end to end
        counts = np.diff(offsets)
        share = np.repeat(1.0 / np.maximum(counts, 1), counts)
        flat = np.bincount(np.repeat(prof, counts) * n + self._genre_flat[idx], weights=share,
                           minlength=len(block.profiles) * n)
        return flat.reshape(len(block.profiles), n)

    def _chosen_block(self, block: ProfileBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each profile's rows as lines (profile, genre column, personal), by profile then rank: the
        ``genre_rows`` liked genres by affinity (ties by name), or its cohort's genres without any."""
        affinity = self._liked_block(block)
        kids = np.fromiter((is_kids_profile(p) for p in block.profiles), bool, len(block.profiles))
        liked = (~kids[:, None] | self._safe[None, :]) & (affinity > 0)
        order = np.argsort(np.where(liked, -affinity, np.inf), axis=1, kind="stable")  # ties: by name
        n_liked = liked.sum(axis=1)
        prof, rank = nonzero_2d(np.arange(min(self.config.genre_rows, order.shape[1])) < n_liked[:, None])
        cohort = [(i, self._column[g]) for i in np.flatnonzero(n_liked == 0).tolist()
                  for g in self._cohort_genres(block.profiles[i])]
        prof = np.concatenate([prof, np.fromiter((i for i, _ in cohort), np.int64, len(cohort))])
        genre = np.concatenate([order[prof[: len(rank)], rank], np.fromiter((g for _, g in cohort), np.int64, len(cohort))])
        personal = np.arange(len(prof)) < len(rank)
        by_profile = np.argsort(prof, kind="stable")  # each part is by profile then rank already
        return prof[by_profile], genre[by_profile], personal[by_profile]

    def generate_block(self, block: ProfileBlock) -> RowBlock:
        """``generate`` for a block: affinities as one weighted count, genres ranked per profile with
        one sort, then the first ``per_source`` allowed titles of every (profile, genre) row at once
        (``first_allowed_lists``), the rows already in page order."""
        prof, genre, personal = self._chosen_block(block)
        if not len(prof):
            return RowBlock.empty()
        k = self.config.per_source
        line, col = first_allowed_lists(block.unseen_ok, prof, self._table, genre, k, first_fetch(k, block.seen_count))
        at = (genre + len(self._names) * ~personal).tolist()
        return rows_of_lists(line, col, prof, self._table, genre, self._scores, self.name, pick(self._evidence, at),
                               pick(self._names, genre.tolist()))

    def _cohort_genres(self, profile: ProfileContext) -> list[str]:
        """``top_genres`` of a profile without liked genres: depends only on its cohort (memoized)."""
        key = (is_kids_profile(profile), profile.region, int(profile.max_maturity_level))
        if key not in self._fallback:
            self._fallback[key] = self.top_genres(replace(profile, history=()))[0]
        return self._fallback[key]
