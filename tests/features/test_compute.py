"""Feature snapshots: known answers and point-in-time correctness."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from features.compute import compute_features, day_end, impression_training_frame
from pathways.config import FeatureConfig
from tests.conftest import make_titles
from tests.features.builders import T0, event, events_table, make_profiles

D0 = T0.date()


def _day(frame: pd.DataFrame, key: str, entity, day: date) -> pd.Series:
    rows = frame[(frame[key] == entity) & (frame["event_timestamp"] == pd.Timestamp(day_end(day)))]
    assert len(rows) == 1
    return rows.iloc[0]


def test_windows_recency_and_static_profile_features():
    rows = [
        event(1, "play", 1, 100, 10, fraction_watched=1.0),  # day 0
        event(2, "impression", 1, 101, 11, row_index=0, position=0),
        event(3, "play", 1, 101, 24 * 8 + 12, fraction_watched=0.2),  # day 8, noon
    ]
    frames = compute_features(events_table(rows), make_titles(), make_profiles(), [D0 + timedelta(days=d) for d in range(10)])
    p = frames.profiles
    assert _day(p, "profile_id", 1, D0)["plays_7d"] == 1
    assert _day(p, "profile_id", 1, D0 + timedelta(days=6))["plays_7d"] == 1
    assert _day(p, "profile_id", 1, D0 + timedelta(days=7))["plays_7d"] == 0
    assert _day(p, "profile_id", 1, D0 + timedelta(days=7))["plays_28d"] == 1
    assert _day(p, "profile_id", 1, D0 + timedelta(days=8))["plays_28d"] == 2
    assert _day(p, "profile_id", 1, D0)["days_since_last_play"] == pytest.approx(14 / 24)
    assert _day(p, "profile_id", 1, D0 + timedelta(days=8))["days_since_last_play"] == pytest.approx(0.5)
    assert _day(p, "profile_id", 2, D0)["days_since_last_play"] == 365.0  # never played
    kid = _day(p, "profile_id", 6, D0)
    assert bool(kid["is_kids"]) and kid["max_maturity_level"] == 1 and kid["region"] == "GB"
    assert len(p) == 6 * 10  # every profile, every day


def test_genre_affinity_is_a_distribution_over_the_vocabulary():
    titles = make_titles()  # title 100 is Comedy, 101 Drama
    rows = [event(1, "play", 1, 100, 1, fraction_watched=0.5), event(2, "play", 1, 101, 2, fraction_watched=1.0)]
    frames = compute_features(events_table(rows), titles, make_profiles(), [D0])
    aff = np.asarray(_day(frames.profiles, "profile_id", 1, D0)["genre_affinity"])
    assert aff.shape == (len(frames.genres),)
    assert aff.sum() == pytest.approx(1.0)
    assert aff[frames.genres.index("Drama")] > aff[frames.genres.index("Comedy")] > 0
    assert np.all(np.asarray(_day(frames.profiles, "profile_id", 2, D0)["genre_affinity"]) == 0)


def test_ctr_counts_conversions_when_the_play_happens():
    rows = [
        event(1, "impression", 1, 100, 23, row_index=0, position=0),  # day 0, 23:00
        event(2, "play", 1, 100, 25, fraction_watched=0.5),  # day 1, 01:00: converts it
        event(3, "impression", 2, 100, 2, row_index=0, position=1),  # never played
    ]
    frames = compute_features(events_table(rows), make_titles(), make_profiles(), [D0, D0 + timedelta(days=1)])
    day0 = _day(frames.titles, "title_id", 100, D0)
    day1 = _day(frames.titles, "title_id", 100, D0 + timedelta(days=1))
    assert day0["impressions_28d"] == 2 and day1["impressions_28d"] == 2
    assert day1["ctr_28d"] > day0["ctr_28d"]  # the click was not known at the end of day 0
    labels = impression_training_frame(events_table(rows))
    assert labels[["profile_id", "label"]].values.tolist() == [[2, 0], [1, 1]]


def test_trending_score_decays_with_the_half_life():
    config = FeatureConfig(trending_half_life_days=2.0)
    rows = [event(1, "play", 4, 100, 12, fraction_watched=0.5)]  # profile 4 is in BR, noon day 0
    frames = compute_features(events_table(rows), make_titles(), make_profiles(), [D0, D0 + timedelta(days=2)], config)
    tr = frames.title_regions.set_index(["title_region", "event_timestamp"])["trending_score"]
    assert tr[("100:BR", pd.Timestamp(day_end(D0)))] == pytest.approx(0.5**0.25)
    assert tr[("100:BR", pd.Timestamp(day_end(D0 + timedelta(days=2))))] == pytest.approx(0.5**1.25)
    assert set(frames.title_regions["title_region"]) == {"100:BR"}


def _random_rows(seed: int, n: int = 400) -> list[dict]:
    rng = np.random.default_rng(seed)
    kinds = ["play", "impression", "rating", "complete"]
    out = []
    for i in range(n):
        kind = str(rng.choice(kinds))
        kw = {"play": {"fraction_watched": float(rng.uniform())}, "rating": {"rating": float(rng.integers(1, 11) / 2)},
              "impression": {"row_index": 0, "position": 0}, "complete": {}}[kind]
        out.append(event(i, kind, int(rng.integers(1, 7)), int(rng.integers(100, 112)), float(rng.uniform(0, 24 * 6)), **kw))
    return out


def test_snapshots_never_see_events_after_their_timestamp():
    """Adding events after a snapshot's event_timestamp changes nothing in that snapshot."""
    rows = _random_rows(5)
    cutoff = pd.Timestamp(day_end(D0 + timedelta(days=2)))
    before = events_table([r for r in rows if r["ts"] < cutoff])
    full = compute_features(events_table(rows), make_titles(), make_profiles(), [D0 + timedelta(days=d) for d in range(6)])
    past = compute_features(before, make_titles(), make_profiles(), [D0 + timedelta(days=d) for d in range(3)])
    pairs = [(full.profiles, past.profiles), (full.titles, past.titles), (full.title_regions, past.title_regions)]
    for whole, b in pairs:
        a = whole[whole["event_timestamp"] <= cutoff].reset_index(drop=True)
        assert len(a) == len(b) > 0 and len(a) < len(whole)
        vectors = [c for c in a.columns if c == "genre_affinity"]
        pd.testing.assert_frame_equal(a.drop(columns=vectors), b.drop(columns=vectors))
        for c in vectors:
            np.testing.assert_allclose(np.stack(a[c]), np.stack(b[c]), rtol=1e-6)


def test_an_event_at_midnight_belongs_to_the_next_day():
    rows = [event(1, "play", 1, 100, 24, fraction_watched=0.5)]  # exactly day_end(D0)
    frames = compute_features(events_table(rows), make_titles(), make_profiles(), [D0, D0 + timedelta(days=1)])
    assert _day(frames.profiles, "profile_id", 1, D0)["plays_7d"] == 0
    assert _day(frames.profiles, "profile_id", 1, D0 + timedelta(days=1))["plays_7d"] == 1


def test_events_of_unknown_profiles_are_an_error():
    rows = [event(1, "play", 42, 100, 1, fraction_watched=0.5)]
    with pytest.raises(ValueError, match=r"unknown profile_id ids, e.g. \[42\]"):
        compute_features(events_table(rows), make_titles(), make_profiles(), [D0])
