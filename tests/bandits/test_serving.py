"""Serving: replayable page selection, default artwork for unknown titles, explicit fallback."""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pytest

from bandits.policies import make_policy
from bandits.serving import ArtworkSelector, DefaultArtwork, choose_artwork


@pytest.fixture(scope="module")
def selector(world, uniform_log):
    policy = make_policy("linucb", world.featurizer).fit(uniform_log)
    return ArtworkSelector(policy, context_fn=world.truth.context, version="lin-1", base_seed=9)


def _page(world, n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(world.title_ids, n), rng.integers(0, 40, n)


def test_same_request_same_artwork(selector, world):
    titles, positions = _page(world)
    a1, p1 = selector.select_page(5, titles, positions, "req-1")
    a2, p2 = selector.select_page(5, titles, positions, "req-1")
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(p1, p2)


def test_other_requests_explore_differently(selector, world):
    titles, positions = _page(world)
    draws = {selector.select_page(5, titles, positions, f"req-{i}")[0].tobytes() for i in range(5)}
    assert len(draws) > 1


def test_propensities_match_the_policy(selector, world):
    titles, positions = _page(world)
    arms, props = selector.select_page(5, titles, positions, "r")
    fz = selector.policy.featurizer
    pi = selector.policy.probabilities(fz.transform(world.truth.context(np.array([5]))[0], titles), fz.n_arms(titles))
    np.testing.assert_allclose(props, pi[np.arange(len(arms)), arms], rtol=1e-6)
    assert np.all((props > 0) & (props <= 1)) and np.all(arms < fz.n_arms(titles))


def test_unknown_titles_get_default_artwork(selector, world):
    titles = np.array([world.title_ids[0], 99_999_999])
    arms, props = selector.select_page(1, titles, np.array([0, 1]), "r")
    assert arms[1] == 0 and props[1] == 1.0 and 0 < props[0] < 1


def test_default_artwork_is_arm_zero_with_certainty():
    arms, props = DefaultArtwork().select_page(1, np.array([5, 6, 7]), np.array([0, 1, 2]), "r")
    np.testing.assert_array_equal(arms, 0)
    np.testing.assert_array_equal(props, 1.0)


def test_fallback_fires_with_its_reason(selector, world):
    titles, positions = _page(world, 10)
    choice = choose_artwork(None, 1, titles, positions, "r")
    assert choice.fallback_reason == "no policy loaded" and choice.policy_version == "default"
    broken = ArtworkSelector(selector.policy, context_fn=lambda p: np.zeros((1, 3)), version="lin-1")
    choice = choose_artwork(broken, 1, titles, positions, "r")
    assert choice.fallback_reason.startswith("policy failed: context") and np.all(choice.arms == 0)
    ok = choose_artwork(selector, 1, titles, positions, "r")
    assert ok.fallback_reason is None and ok.policy_version == "lin-1"


class _Answers:
    """A policy that answers with fixed arrays and counts its calls."""

    version = "fixed-1"

    def __init__(self, arms, props):
        self.arms, self.props, self.calls = arms, props, 0

    def select_page(self, profile_id, title_ids, positions, request_id, profile_features=None):
        self.calls += 1
        return self.arms, self.props


def test_misshapen_answers_fall_back_and_empty_pages_never_ask():
    titles, positions = np.array([1, 2, 3]), np.arange(3)
    short = choose_artwork(_Answers(np.zeros(2), np.ones(2)), 1, titles, positions, "r")
    assert short.policy_version == "default" and short.fallback_reason.startswith("policy failed: policy returned shapes")
    np.testing.assert_array_equal(short.arms, 0)
    np.testing.assert_array_equal(short.propensities, 1.0)
    silent = _Answers(np.zeros(0), np.zeros(0))
    empty = choose_artwork(silent, 1, np.zeros(0, np.int64), np.zeros(0, np.int64), "r")
    assert silent.calls == 0 and empty.policy_version == "fixed-1" and len(empty.arms) == 0


def test_positions_must_match_titles(selector, world):
    with pytest.raises(ValueError, match="positions"):
        selector.select_page(1, world.title_ids[:3], np.arange(2), "r")


def test_served_page_round_trips_through_events(selector, world):
    from datetime import datetime

    import pyarrow as pa

    from bandits.events import artwork_impression_events
    from bandits.log import BanditLog
    from features.schema import EVENT_SCHEMA

    titles, positions = _page(world, 12, seed=3)
    titles = np.unique(titles)
    positions = np.arange(len(titles))
    choice = choose_artwork(selector, 4, titles, positions, "req-9")
    ts = datetime(2026, 3, 1, tzinfo=UTC)
    imps = artwork_impression_events(choice, 4, titles, np.zeros(len(titles)), positions, "s1", ts, "req-9")
    assert imps.schema.equals(EVENT_SCHEMA, check_metadata=False)
    click = pa.Table.from_pylist(
        [{"event_id": "c1", "event_type": "artwork_click", "ts": ts, "profile_id": 4, "title_id": int(titles[2]), "session_id": "s1"}],
        schema=EVENT_SCHEMA,
    )
    log = BanditLog.from_events(pa.concat_tables([imps, click]), world.truth.context, world.featurizer.n_arms)
    np.testing.assert_array_equal(log.arm, choice.arms)
    np.testing.assert_allclose(log.propensity, choice.propensities, rtol=1e-6)
    assert log.reward.tolist() == [float(i == 2) for i in range(len(titles))]
    assert set(log.policy_version) == {"lin-1"}


@pytest.mark.parametrize("kind", ["uniform", "epsilon_greedy", "linucb", "thompson", "logistic"])
def test_one_call_per_page_gives_exactly_the_distribution_it_logs(kind, world, uniform_log):
    """The page is scored per distinct arm layout; each title's logged propensity is its arm's
    probability under the policy's distribution for that title's own features (computed here
    the slow way, title by title's features, with the same generator)."""
    policy = make_policy(kind, world.featurizer).fit(uniform_log)
    selector = ArtworkSelector(policy, context_fn=world.truth.context, version=f"{kind}-1", base_seed=9)
    titles, positions = _page(world, 300, seed=4)
    arms, props = selector.select_page(7, titles, positions, "req-3")
    fz = world.featurizer
    from bandits.rng import decision_rng

    rng = decision_rng(9, 7, "req-3")  # what select_page used: the distribution first, then the draw
    pi = policy.probabilities(fz.transform(world.truth.context(np.array([7]))[0], titles), fz.n_arms(titles), rng)
    np.testing.assert_allclose(props, pi[np.arange(len(arms)), arms], rtol=1e-5)
    assert np.all(props > 0) and np.all(arms < fz.n_arms(titles))
    layouts = fz.layouts[0][fz.rows(titles)]
    assert len(np.unique(layouts)) > 1  # the page mixes layouts: the grouping is exercised


def test_code_features_are_exactly_the_per_title_features(world):
    fz = world.featurizer
    context = world.truth.context(np.array([11]))[0]
    layout, codes, n_arms = fz.layouts
    np.testing.assert_array_equal(fz.code_features(context)[codes[layout]], fz.transform(context, fz.title_ids))
    np.testing.assert_array_equal(n_arms[layout], fz.n_arms(fz.title_ids))
    with pytest.raises(ValueError, match="context: expected"):
        fz.code_features(np.zeros(fz.n_context + 1))


def test_dense_and_searched_title_lookups_agree(world):
    from dataclasses import replace

    fz = world.featurizer
    far = replace(fz, title_ids=fz.title_ids + (1 << 40))  # too large for the dense table: searched
    probe = np.r_[fz.title_ids[::-1], -5, 0, fz.title_ids.max() + 1, 1 << 50]
    assert fz._dense_rows is not None and far._dense_rows is None
    np.testing.assert_array_equal(fz.rows(probe), far.rows(np.where(probe >= 0, probe + (1 << 40), probe)))
    got = fz.rows(probe)
    assert got[[-4, -2, -1]].tolist() == [-1, -1, -1]
    np.testing.assert_array_equal(fz.title_ids[got[: len(fz.title_ids)]], fz.title_ids[::-1])


def test_profile_features_given_by_the_caller_replace_the_context_read(selector, world):
    reads = []

    def context_fn(ids):
        reads.append(ids.tolist())
        return world.truth.context(ids)

    fixed = world.truth.context(np.array([5]))[0]
    given = ArtworkSelector(selector.policy, context_fn, "lin-1", 9, features_context=lambda f: f["ctx"])
    titles, positions = _page(world)
    a1, p1 = given.select_page(5, titles, positions, "req-1", {"ctx": fixed})
    assert reads == []  # the caller's features: no read of its own
    a2, p2 = given.select_page(5, titles, positions, "req-1")
    assert reads == [[5]]
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(p1, p2)
