"""Trending by region, cohort lists, the registry, and the MLflow round trip of the ALS model."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from candidates.registry import build_sources, cohort_rows, generate_all, generate_all_batch
from candidates.trending import TrendingSource, cohort_popular, title_popularity, trending_by_region
from pathways import tracking
from pathways.artifacts.factor_index import FactorIndex
from pathways.artifacts.registry import load_registered
from pathways.types import Candidates, ProfileContext
from tests.candidates import world
from training.als import train_als


def _plays(spec: list[tuple[int, int, float]]):
    """(profile, title, days before AS_OF) -> events table."""
    return world.events_table([world.event(i, p, t, world.AS_OF - timedelta(days=d)) for i, (p, t, d) in enumerate(spec)])


def test_recent_plays_in_br_trend_above_older_ones_and_other_regions_do_not_count() -> None:
    events = _plays([(20, 101, 0.5)] * 3 + [(20, 102, 10.0)] * 6 + [(1, 103, 0.1)] * 20 + [(20, 104, -1.0)] * 9)
    trending = trending_by_region(events, world.profiles_table(), world.AS_OF, half_life_days=3.0)
    br = trending["BR"]
    assert br.title_ids.tolist() == [101, 102]  # 103 was played in the US, 104 after AS_OF
    np.testing.assert_allclose(br.scores, [3 * 0.5 ** (0.5 / 3), 6 * 0.5 ** (10 / 3)], rtol=1e-5)
    assert br.evidence == "Trending in Brazil" and br.key == "BR"
    assert trending["US"].title_ids.tolist() == [103]


def test_trending_source_filters_for_the_profile() -> None:
    events = _plays([(20, 112, 1.0)] * 5 + [(20, 101, 1.0)] * 2 + [(20, 108, 1.0)])
    source = TrendingSource(trending_by_region(events, world.profiles_table(), world.AS_OF, 3.0), world.catalog(), world.CONFIG)
    assert [r.title_ids.tolist() for r in source.generate(ProfileContext(20, "BR", 4))] == [[112, 101]]  # 108: US only
    assert [r.title_ids.tolist() for r in source.generate(ProfileContext(21, "BR", 1))] == [[101]]  # 112 mature
    assert source.generate(ProfileContext(22, "JP", 4)) == []  # nothing trends in Japan


def test_cohort_popular_puts_region_trending_first_then_global_popularity() -> None:
    cat = world.catalog()
    events = _plays([(20, 101, 1.0)] * 2 + [(1, 104, 1.0)] * 5 + [(1, 102, 1.0)] * 3)
    trending = trending_by_region(events, world.profiles_table(), world.AS_OF, 3.0)
    popularity = title_popularity(events, cat, world.AS_OF)
    row = cohort_popular(trending, popularity, cat, "BR", 4, k=6)
    assert row.title_ids.tolist()[:3] == [101, 104, 102]
    assert row.evidence == "Popular in Brazil" and np.all(np.diff(row.scores) < 0)
    jp = cohort_popular(trending, popularity, cat, "JP", 4, k=3)
    assert jp.title_ids.size == 0  # no title is licensed in Japan
    with pytest.raises(ValueError, match="popularity must have shape"):
        cohort_popular(trending, popularity[:3], cat, "BR", 4, k=3)


@pytest.mark.parametrize(
    ("as_of", "half_life", "message"),
    [(world.AS_OF, 0.0, "half_life_days must be > 0"), (world.AS_OF.replace(tzinfo=None), 3.0, "timezone-aware")],
)
def test_trending_bad_inputs(as_of, half_life, message) -> None:
    with pytest.raises(ValueError, match=message):
        trending_by_region(world.events(), world.profiles_table(), as_of, half_life)


def _sources():
    return build_sources(world.als(), world.catalog(), world.CONFIG, world.AS_OF, world.events(), world.profiles_table())


def test_generate_all_collects_every_profile_source_and_batch_matches() -> None:
    sources = _sources()
    profiles = world.profiles()
    rows = generate_all(sources, profiles[0])
    assert {"continue_watching", "als", "because_you_watched", "trending", "genre"} <= {r.source for r in rows}
    assert "popular" not in {r.source for r in rows}  # fallback pages only
    assert len({r.row_id for r in rows}) == len(rows)
    for profile, batched in zip(profiles, generate_all_batch(sources, profiles)):
        single = generate_all(sources, profile)
        assert [r.row_id for r in batched] == [r.row_id for r in single]
        assert all(np.array_equal(a.title_ids, b.title_ids) for a, b in zip(batched, single))


def test_cohort_rows_ignore_history_and_personal_sources() -> None:
    sources = _sources()
    profile = world.profiles()[0]
    rows = cohort_rows(sources, profile)
    assert {r.source for r in rows} <= {"trending", "genre", "new_releases", "popular"}
    assert "popular" in {r.source for r in rows}
    assert all(not r.evidence.startswith("Because you") for r in rows)
    assert any(101 in r.title_ids.tolist() for r in rows)  # finished by the profile, fine for its cohort


class _Fixed:
    name = "two_tower"
    serves_cohorts = False

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        return [Candidates(self.name, np.array([101]), np.array([1.0]), "Fixed")]


def test_extra_sources_plug_in_and_names_must_be_unique() -> None:
    sources = build_sources(None, world.catalog(), world.CONFIG, world.AS_OF, world.events(), world.profiles_table(),
                            extra=[_Fixed()])
    assert "als" not in [s.name for s in sources]
    assert generate_all(sources, ProfileContext(5, "US", 4))[-1].source == "two_tower"
    with pytest.raises(ValueError, match="unique"):
        build_sources(None, world.catalog(), world.CONFIG, world.AS_OF, world.events(), world.profiles_table(),
                      extra=[_Fixed(), _Fixed()])


def test_train_als_registers_champion_and_loads_back(mlflow_uri: str, tmp_path) -> None:
    import mlflow.pyfunc
    import pandas as pd

    summary = train_als(world.events(), world.TRAIN, tmp_path / "als", name="als_test")
    assert summary["n_profiles"] == 18 and summary["nnz"] > 0
    assert tracking.alias_version("als_test") == summary["version"]
    loaded = load_registered(tracking.alias_uri("als_test"), "factors")
    als = world.als()
    np.testing.assert_allclose(loaded.item_factors, als.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.user_factors, als.user_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.title_ids, als.title_ids)
    model = mlflow.pyfunc.load_model(tracking.alias_uri("als_test"))
    got = model.predict(pd.DataFrame({"profile_id": [2, 12345]}), params={"k": 4})
    expected = als.title_ids[FactorIndex(als.item_factors).search(als.user_factors[als.profile_row[2]], 4)[1][0]]
    assert got[0] == expected.tolist() and got[1] == []
