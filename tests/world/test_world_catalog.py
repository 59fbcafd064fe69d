"""The catalog and the profiles: shapes and correlations the rest of Pathways relies on."""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from features.schema import REGIONS
from tests.world.world_cases import frames, small
from world.vocab import GENRES, MOODS


def test_titles_have_readable_unique_names_and_valid_genres_and_cast():
    _, titles, _ = frames()
    assert titles.name.is_unique and titles.name.map(lambda n: bool(re.fullmatch(r"[A-Z][A-Za-z :]+( [IVX]+)?", n))).all()
    assert titles.genres.map(lambda g: 1 <= len(g) <= 3 and len(set(g)) == len(g) and set(g) <= set(GENRES)).all()
    assert titles.cast.map(lambda c: 2 <= len(c) <= 4 and len(set(c)) == len(c)).all()
    appearances = Counter(name for cast in titles.cast for name in cast)
    assert appearances.most_common(1)[0][1] >= 10  # stars recur
    assert len(appearances) > 50


def test_every_region_licenses_most_titles_and_some_titles_are_exclusive():
    _, titles, _ = frames()
    for region in REGIONS:
        assert sum(region in rs for rs in titles.regions) / len(titles) >= 0.6, region
    assert titles.regions.map(len).eq(1).sum() > 0
    assert titles.regions.map(len).eq(len(REGIONS)).mean() > 0.5


def test_maturity_follows_genre():
    _, titles, _ = frames()
    primary = titles.genres.str[0]
    kids = titles[primary.isin(["Animation", "Family", "Kids"])].maturity_level
    grim = titles[primary.isin(["Horror", "Crime"])].maturity_level
    assert kids.max() <= 1 and grim.min() >= 3 and kids.mean() < grim.mean() - 2
    assert set(titles.maturity_level) <= {0, 1, 2, 3, 4}


def test_release_dates_spread_over_years_with_recent_releases():
    _, titles, _ = frames()
    w = small()
    end = (pd.Timestamp(w.config.start) + pd.Timedelta(days=w.config.days)).date()
    age = titles.release_date.map(lambda d: (end - d).days)
    assert age.min() >= 1 and age.max() > 365 * 7
    assert (age <= 90).mean() > 0.05


def test_runtimes_separate_episodes_from_films():
    _, titles, _ = frames()
    short, long = titles[titles.runtime_min < 65], titles[titles.runtime_min >= 70]
    assert len(short) > 10 and len(long) > 10 and titles.runtime_min.between(10, 180).all()


def test_artwork_variants_are_indexed_and_themed():
    _, titles, _ = frames()
    assert titles.artwork_ids.map(lambda a: 3 <= len(a) <= 6 and list(a) == list(range(len(a)))).all()
    assert (titles.artwork_ids.map(len) == titles.artwork_themes.map(len)).all()
    themes = [t for ts in titles.artwork_themes for t in ts]
    kinds = Counter(t.split(":", 1)[0] for t in themes)
    assert set(kinds) == {"genre", "cast", "mood"} and all(kinds[k] > 20 for k in kinds)
    assert {t[5:] for t in themes if t.startswith("mood:")} <= set(MOODS)
    assert all(f"genre:{g[0]}" == ts[0] for g, ts in zip(titles.genres, titles.artwork_themes))


def test_accounts_profiles_regions_and_devices():
    _, _, profiles = frames()
    w = small()
    per_account = profiles.groupby("account_id").size()
    assert per_account.between(1, 4).all() and per_account.nunique() == 4
    assert profiles.profile_id.is_unique and len(per_account) == w.config.n_accounts
    share = profiles.region.value_counts(normalize=True)
    assert share.index[0] == "US" and set(share.index) <= set(REGIONS)
    assert abs(profiles.is_kids.mean() - w.config.kids_profile_share) < 0.06
    owners = profiles.groupby("account_id").head(1)
    assert not owners.is_kids.any()  # an account is owned by an adult
    assert profiles.devices.map(lambda d: 1 <= len(d) <= 4 and set(d) <= {"tv", "mobile", "web", "tablet"}).all()
    assert (profiles.groupby("account_id").region.nunique() == 1).all()
