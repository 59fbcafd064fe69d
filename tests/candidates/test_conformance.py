"""Every candidate source passes the shared conformance suite (three lines per source)."""

from __future__ import annotations

import numpy as np

from candidates.als import AlsSource, FactorSource
from candidates.base import CandidateSource
from candidates.because_you_watched import BecauseYouWatchedSource
from candidates.continue_watching import ContinueWatchingSource
from candidates.genres import GenreSource
from candidates.new_releases import NewReleasesSource
from candidates.precomputed import PrecomputedSource
from candidates.trending import PopularSource, TrendingSource, title_popularity, trending_by_region
from pathways.artifacts.factors import FactorArtifacts
from tests.candidates import world
from tests.candidates.conformance import ALL_TITLES, SourceConformance


def _trending() -> dict:
    return trending_by_region(world.events(), world.profiles_table(), world.AS_OF, 3.0)


def _popularity():
    return title_popularity(world.events(), world.catalog(), world.AS_OF)


class TestAls(SourceConformance):
    def make_source(self) -> CandidateSource:
        return AlsSource(world.als(), world.catalog(), world.CONFIG)


class TestBecauseYouWatched(SourceConformance):
    def make_source(self) -> CandidateSource:
        return BecauseYouWatchedSource(world.als(), world.catalog(), world.CONFIG)


class TestTrending(SourceConformance):
    def make_source(self) -> CandidateSource:
        return TrendingSource(_trending(), world.catalog(), world.CONFIG)


class TestPopular(SourceConformance):
    def make_source(self) -> CandidateSource:
        return PopularSource(_trending(), _popularity(), world.catalog(), world.CONFIG)


class TestGenres(SourceConformance):
    def make_source(self) -> CandidateSource:
        return GenreSource(world.catalog(), _popularity(), world.CONFIG)


class TestContinueWatching(SourceConformance):
    def make_source(self) -> CandidateSource:
        return ContinueWatchingSource(world.catalog(), world.CONFIG)


class TestNewReleases(SourceConformance):
    def make_source(self) -> CandidateSource:
        return NewReleasesSource(world.catalog(), _popularity(), world.CONFIG, world.AS_OF)


def _lists() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Offline lists that repeat titles (one unknown), unsorted and with ties: the block path's
    sort and first-occurrence steps are exercised, not only its already-sorted fast path."""
    rng = np.random.default_rng(4)
    ids = np.array(ALL_TITLES + (999,), np.int64)
    lists = {pid: (rng.choice(ids, 14), rng.integers(0, 5, 14).astype(np.float32)) for pid in (1, 9, 14, 20, 30, 2)}
    lists[5] = (ids[:8], np.linspace(1.0, 0.0, 8).astype(np.float32))  # sorted, no repeats
    return lists


class TestPrecomputed(SourceConformance):
    def make_source(self) -> CandidateSource:
        return PrecomputedSource(_lists(), world.catalog(), world.CONFIG, "top_picks", "Your top picks")


class _RulesSkipped(SourceConformance):
    """A broken source (the US trending titles, hard rules never applied) under the suite."""

    name = "trending"
    serves_cohorts = True

    def make_source(self) -> CandidateSource:
        return self

    def generate(self, profile):  # noqa: ANN001, ANN201
        return [_trending()["US"].top(world.CONFIG.per_source)]


def test_the_suite_catches_a_source_that_skips_the_rules() -> None:
    import pytest

    suite = _RulesSkipped()
    kid = world.profiles()[3]
    with pytest.raises(AssertionError, match="broke hard rules"):
        suite.check_rows(suite.generate(kid), kid)


def _two_tower_like() -> FactorArtifacts:
    """Random unit embeddings for the world's profiles and titles (a stand-in for a two-tower)."""
    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(4, 6)), rng.normal(size=(len(ALL_TITLES), 6))
    return FactorArtifacts(users / np.linalg.norm(users, axis=1, keepdims=True), items, [1, 9, 20, 30], list(ALL_TITLES))


class TestFactorSourceForOtherModels(SourceConformance):
    def make_source(self) -> CandidateSource:
        return FactorSource(_two_tower_like(), world.catalog(), world.CONFIG, name="two_tower", evidence="Picked for you")
