"""Rules the clean event log never breaks (checked on the small world)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from features.ingest import ingest
from features.schema import KIDS_MAX_MATURITY
from tests.world.world_cases import frames, small


def _events_with(cols: list[str]) -> pd.DataFrame:
    ev, titles, profiles = frames()
    return ev.merge(titles[["title_id", *[c for c in cols if c in titles]]], on="title_id", how="left").merge(
        profiles[["profile_id", *[c for c in cols if c in profiles]]], on="profile_id", how="left"
    )


def test_impressions_only_of_licensed_allowed_released_titles():
    df = _events_with(["regions", "maturity_level", "release_date", "region", "max_maturity_level"])
    imp = df[df.event_type.isin(["impression", "artwork_impression"])]
    assert len(imp) > 1000
    assert all(r in rs for r, rs in zip(imp.region, imp.regions))
    assert (imp.maturity_level <= imp.max_maturity_level).all()
    assert (imp.ts.dt.date >= imp.release_date).all()
    plays = df[df.event_type == "play"]  # plays come from the page or a search: same rules
    assert all(r in rs for r, rs in zip(plays.region, plays.regions))
    assert (plays.maturity_level <= plays.max_maturity_level).all()


def test_profiles_maturity_ceilings():
    _, _, profiles = frames()
    kids = profiles[profiles.is_kids]
    assert len(kids) > 0 and (kids.max_maturity_level == KIDS_MAX_MATURITY).all()
    assert set(profiles[~profiles.is_kids].max_maturity_level) == {3, 4}


def test_timestamps_ids_and_value_ranges():
    ev, _, profiles = frames()
    w = small()
    start = datetime.fromisoformat(w.config.start.replace("Z", "+00:00"))
    assert ev.ts.min() >= start and ev.ts.max() < start + timedelta(days=w.config.days)
    assert ev.event_id.is_unique and ev.session_id.notna().all()
    created = ev.merge(profiles[["profile_id", "created_at"]], on="profile_id").created_at
    assert (ev.ts.to_numpy() >= created.to_numpy()).all()  # nobody acts before their profile exists
    f = ev.fraction_watched.dropna()
    assert f.between(0.0, 1.0).all() and len(f) > 0
    ratings = ev[ev.event_type == "rating"].rating
    assert len(ratings) > 0 and ratings.between(0.5, 5.0).all() and (ratings * 2 == np.round(ratings * 2)).all()
    assert set(ev.device) <= {"tv", "mobile", "web", "tablet"}


def test_playback_positions_stay_within_the_runtime():
    df = _events_with(["runtime_min"])
    hb = df[df.event_type.isin(["heartbeat", "pause"])]
    assert len(hb) > 100
    assert (hb.position_s >= 0).all() and (hb.position_s <= hb.runtime_min * 60).all()
    assert (df[df.event_type == "heartbeat"].position_s % 300 == 0).all()  # one per five minutes
    assert (df[df.event_type == "complete"].fraction_watched >= 0.9).all()


def test_artwork_is_uniform_with_its_propensity_and_clicks_lead_to_plays():
    ev, titles, _ = frames()
    n_var = titles.set_index("title_id").artwork_ids.map(len)
    art = ev[ev.event_type == "artwork_impression"]
    n = art.title_id.map(n_var)
    assert (art.artwork_id < n).all() and (art.artwork_id >= 0).all()
    np.testing.assert_allclose(art.propensity, 1.0 / n, rtol=1e-6)
    assert (art.policy_version == "uniform-v0").all()
    assert ev[ev.event_type != "artwork_impression"].policy_version.isna().all()
    # Every impression has its artwork twin, and every click a later play of that title.
    imp = ev[ev.event_type == "impression"]
    key = ["session_id", "title_id", "ts", "row_index", "position"]
    assert len(imp.merge(art, on=key)) == len(imp) == len(art)
    clicks = ev[ev.event_type == "artwork_click"]
    plays = ev[ev.event_type == "play"]
    joined = clicks.merge(plays, on=["session_id", "title_id"], suffixes=("", "_play"))
    followed = joined[joined.ts_play >= joined.ts].event_id.unique()
    assert len(clicks) > 50 and set(followed) == set(clicks.event_id)


def test_searches_name_nothing_or_a_title_played_in_that_session():
    ev, _, _ = frames()
    search = ev[ev.event_type == "search"]
    assert len(search) > 20 and search["query"].notna().all()
    found = search[search.title_id.notna()]
    assert 0 < len(found) < len(search)
    plays = ev[ev.event_type == "play"][["session_id", "title_id"]].drop_duplicates()
    assert len(found.merge(plays, on=["session_id", "title_id"])) == len(found)


def test_the_ingest_validator_accepts_every_clean_event(tmp_path):
    w = small()
    report = ingest(w.events, w.titles, w.profiles, tmp_path, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert report.quarantined == 0 and report.accepted == w.events.num_rows
