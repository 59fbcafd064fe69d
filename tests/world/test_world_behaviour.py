"""Behaviour the simulated members must show (each could fail if the simulation were wrong)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.world.world_cases import affinity, frames, small
from world.vocab import KIDS_GENRES, REGION_UTC_OFFSET_H


def _plays() -> pd.DataFrame:
    ev, _, _ = frames()
    return ev[ev.event_type == "play"]


def test_popularity_is_skewed_top_decile_gets_over_30_percent_of_plays():
    w = small()
    counts = _plays().title_id.value_counts().reindex(w.title_ids, fill_value=0).sort_values(ascending=False)
    top = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert top > 0.3
    # The truth drives it: the most popular decade of titles is played more than the least popular.
    pop = pd.Series(w.title_popularity, index=w.title_ids)
    assert counts[pop.nlargest(20).index].sum() > 3 * counts[pop.nsmallest(20).index].sum()


def test_members_play_titles_closer_to_their_taste_than_those_they_skip():
    ev, _, _ = frames()
    w = small()
    imp = ev[ev.event_type == "impression"][["session_id", "profile_id", "title_id"]]
    clicked = ev[ev.event_type == "artwork_click"][["session_id", "title_id"]].assign(played=True)
    imp = imp.merge(clicked.drop_duplicates(), on=["session_id", "title_id"], how="left")
    played = imp.played.notna().to_numpy()
    aff = affinity(w, imp.profile_id.to_numpy(), imp.title_id.to_numpy())
    assert played.sum() > 500
    assert aff[played].mean() > aff[~played].mean() + 0.25 * aff.std()


def test_plays_concentrate_in_local_evening_hours():
    ev, _, profiles = frames()
    plays = _plays().merge(profiles[["profile_id", "region"]], on="profile_id")
    local = (plays.ts.dt.hour + plays.ts.dt.minute / 60 + plays.region.map(REGION_UTC_OFFSET_H)) % 24
    evening = ((local >= 18) & (local < 24)).mean()
    assert evening > 0.45  # uniform hours would give 0.25
    assert ((local >= 2) & (local < 8)).mean() < 0.1


def test_kids_play_kids_genres():
    ev, titles, profiles = frames()
    kids_titles = set(titles[titles.genres.map(lambda g: g[0] in KIDS_GENRES)].title_id)
    plays = _plays().merge(profiles[["profile_id", "is_kids"]], on="profile_id")
    kid_share = plays[plays.is_kids].title_id.isin(kids_titles).mean()
    adult_share = plays[~plays.is_kids].title_id.isin(kids_titles).mean()
    assert kid_share > 0.9 and adult_share < 0.5


def test_series_are_binged_and_films_are_watched_once():
    ev, titles, _ = frames()
    plays = _plays().merge(titles[["title_id", "runtime_min"]], on="title_id")
    per_session = plays.groupby(["session_id", "title_id"]).agg(n=("event_id", "size"), runtime=("runtime_min", "first"))
    series = per_session[per_session.runtime < 65]
    films = per_session[per_session.runtime >= 70]
    assert (series.n >= 3).mean() > 0.15 and series.n.max() > 3
    assert films.n.max() == 1
    f = plays.fraction_watched
    assert 0.05 < (f < 0.9).mean() < 0.5  # some unfinished: "continue watching" exists


def test_ratings_follow_affinity():
    ev, _, _ = frames()
    w = small()
    r = ev[ev.event_type == "rating"]
    aff = affinity(w, r.profile_id.to_numpy(), r.title_id.to_numpy())
    assert len(r) > 100 and np.corrcoef(aff, r.rating)[0, 1] > 0.2


def test_artwork_variants_with_higher_truth_multiplier_are_clicked_more():
    ev, _, _ = frames()
    w = small()
    truth = w.artwork_truth()
    art = ev[ev.event_type == "artwork_impression"]
    clicked = ev[ev.event_type == "artwork_click"][["session_id", "title_id", "artwork_id"]].assign(hit=True)
    art = art.merge(clicked.drop_duplicates(), on=["session_id", "title_id", "artwork_id"], how="left")
    hit = art.hit.notna().to_numpy()
    p = np.array([w.profile_index[i] for i in art.profile_id])
    t = np.array([w.title_index[i] for i in art.title_id])
    mult = truth.play_multiplier(p, t, art.artwork_id.to_numpy())
    assert mult[hit].mean() > mult[~hit].mean() + 0.1


def test_new_profiles_have_few_or_no_events():
    ev, _, profiles = frames()
    w = small()
    end = pd.Timestamp(w.config.start) + pd.Timedelta(days=w.config.days)
    new = profiles[profiles.created_at > end - pd.Timedelta(days=2)]
    old = profiles[profiles.created_at < pd.Timestamp(w.config.start)]
    sessions = ev.groupby("profile_id").session_id.nunique()
    assert len(new) >= 5
    assert sessions.reindex(new.profile_id, fill_value=0).mean() < 0.3 * sessions.reindex(old.profile_id, fill_value=0).mean()
