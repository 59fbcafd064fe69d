"""The conformance mixin every candidate source passes: subclass it and define ``make_source``.

Checks, on the hand-built profiles of ``world.profiles()`` and on random profiles (Hypothesis):
rows are ``Candidates`` of the source's name, sorted by score desc, without duplicate titles,
with at most ``per_source`` titles, distinct keys, and no title that breaks a hard rule
(maturity, licence region, finished) for the profile; the batch path equals the single path.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candidates.base import CandidateSource, CohortRules, generate_batch
from candidates.block import ProfileBlock
from candidates.registry import generate_all_block
from features.schema import MAX_MATURITY, REGIONS
from pathways.types import Candidates, ProfileContext
from ranking.rules import violations
from tests.candidates import world

ALL_TITLES = world.BLOCK_A + world.BLOCK_B


@st.composite
def random_profiles(draw: st.DrawFn) -> ProfileContext:
    history = tuple(draw(st.lists(st.sampled_from(ALL_TITLES + (999,)), max_size=10)))
    finished = frozenset(draw(st.lists(st.sampled_from(history), max_size=4))) if history else frozenset()
    progress = draw(st.dictionaries(st.sampled_from(ALL_TITLES), st.floats(0.0, 1.0), max_size=5))
    return ProfileContext(
        profile_id=draw(st.sampled_from([1, 5, 9, 14, 20, 30, 77])),
        region=draw(st.sampled_from(sorted(REGIONS))),
        max_maturity_level=draw(st.integers(0, MAX_MATURITY)),
        is_kids=draw(st.booleans()),
        history=history,
        finished=finished,
        in_progress=progress,
        in_progress_ts={t: float(i) for i, t in enumerate(progress)},
    )


class SourceConformance:
    """Mixin: ``make_source()`` returns the source under test, built on ``world``."""

    def make_source(self) -> CandidateSource:
        raise NotImplementedError

    def source(self) -> CandidateSource:
        cached = type(self).__dict__.get("_cached")
        if cached is None:
            cached = self.make_source()
            type(self)._cached = cached
        return cached

    def check_rows(self, rows: list[Candidates], profile: ProfileContext) -> None:
        source = self.source()
        assert isinstance(rows, list)
        keys = [r.key for r in rows]
        assert len(set(keys)) == len(keys), f"duplicate row keys {keys}"
        for row in rows:
            assert isinstance(row, Candidates)
            assert row.source == source.name
            assert row.evidence, "every row says why it is there"
            assert 0 < len(row) <= world.CONFIG.per_source
            assert np.all(np.diff(row.scores) <= 0), f"scores not sorted desc: {row.scores}"
            assert np.unique(row.title_ids).size == len(row), f"duplicates in {row.title_ids}"
            bad = violations(world.catalog(), row.title_ids.tolist(), profile.region,
                             profile.max_maturity_level, set(profile.finished))
            assert not bad, f"{source.name} broke hard rules for {profile}: {bad}"

    def test_is_a_candidate_source(self) -> None:
        assert isinstance(self.source(), CandidateSource)

    def test_hand_picked_profiles(self) -> None:
        produced = 0
        for profile in world.profiles():
            rows = self.source().generate(profile)
            self.check_rows(rows, profile)
            produced += len(rows)
        assert produced > 0, "the source returned nothing for every profile"

    def test_batch_equals_single(self) -> None:
        profiles = world.profiles()
        batched = generate_batch(self.source(), profiles)
        assert len(batched) == len(profiles)
        for profile, rows in zip(profiles, batched):
            single = self.source().generate(profile)
            assert [r.row_id for r in rows] == [r.row_id for r in single]
            for a, b in zip(rows, single):
                np.testing.assert_array_equal(a.title_ids, b.title_ids)
                np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)

    def check_block_equals_single(self, profiles: list[ProfileContext]) -> None:
        """The block path (``generate_all_block``: long form, masks per block) gives each profile the
        rows ``generate`` gives it alone: same ids, evidence, titles and scores to the bit."""
        if not getattr(self.source(), "serves_profiles", True):
            return  # fallback pages only: never in a profile's block
        catalog = world.catalog()
        got = generate_all_block([self.source()], ProfileBlock(profiles, catalog, CohortRules(catalog)))
        for i, profile in enumerate(profiles):
            single = self.source().generate(profile)
            mine = np.flatnonzero(got.profile == i)
            assert [got.row_id(r) for r in mine] == [r.row_id for r in single]
            for r, want in zip(mine, single):
                a, b = got.offsets[r], got.offsets[r + 1]
                assert got.evidence[r] == want.evidence and got.source[r] == want.source
                np.testing.assert_array_equal(catalog.title_ids[got.positions[a:b]], want.title_ids)
                np.testing.assert_array_equal(got.scores[a:b], want.scores)

    def test_block_equals_single(self) -> None:
        self.check_block_equals_single(world.profiles())

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(profiles=st.lists(random_profiles(), min_size=1, max_size=6))
    def test_random_blocks_equal_single(self, profiles: list[ProfileContext]) -> None:
        self.check_block_equals_single(profiles)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(profile=random_profiles())
    def test_random_profiles_respect_contract(self, profile: ProfileContext) -> None:
        self.check_rows(self.source().generate(profile), profile)
