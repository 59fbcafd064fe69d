"""RowScorer: the ranker orders rows; a learning-to-rank list, when the profile has one, wins."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pathways.artifacts.ranker import RankerArtifact
from pathways.config import PageConfig
from pathways.types import Candidates, ProfileContext
from ranking.features import FEATURE_COLUMNS, PROFILE_FEATURES, TITLE_FEATURES, RowScorer


class FakeStore:
    """Online reads with fixed values; title popularity (t_plays_28d) = title id."""

    def __init__(self, catalog):
        self.catalog = catalog

    def genres(self):
        return ("Comedy", "Drama")

    def online_titles(self, ids):
        return pd.DataFrame({"title_id": ids, **{f: [float(i) for i in ids] for f in TITLE_FEATURES}})

    def online_trending(self, keys):
        return pd.DataFrame({"title_region": keys, "trending_score": 0.0})

    def online_profiles(self, ids, names=None):
        row = {f: 1.0 for f in PROFILE_FEATURES}
        row["genre_affinity"] = [0.5, 0.5]
        return pd.DataFrame([{**row, "profile_id": i} for i in ids])[["profile_id", *(names or PROFILE_FEATURES)]]


class PopularityModel:
    """P(play) increasing in t_plays_28d (the standardization is the identity)."""

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-20.0 * (X[:, FEATURE_COLUMNS.index("t_plays_28d")] - 4.7)))  # log1p(plays)
        return np.stack([1 - p, p], axis=1)


def _scorer(catalog, ltr=None):
    n = len(FEATURE_COLUMNS)
    art = RankerArtifact("gbdt", list(FEATURE_COLUMNS), np.zeros(n, np.float32), np.ones(n, np.float32), PopularityModel())
    return RowScorer(art, FakeStore(catalog), catalog, as_of_days=20_000.0, ltr=ltr)


def test_ranker_orders_rows_and_pinned_rows_keep_their_order(catalog):
    ids = np.array([101, 110, 105, 120], np.int64)
    row = Candidates("als", ids, np.array([4.0, 3.0, 2.0, 1.0]))
    pinned = Candidates("continue_watching", ids, np.array([4.0, 3.0, 2.0, 1.0]))
    scored, kept = _scorer(catalog).score_rows(ProfileContext(1, "US", 4), [row, pinned])
    assert scored.title_ids.tolist() == [120, 110, 105, 101]  # most popular first
    assert kept.title_ids.tolist() == ids.tolist()


def test_the_page_config_sets_the_pinned_rows_and_the_weight_of_a_rows_own_order(catalog):
    ids = np.array([101, 110, 105, 120], np.int64)
    row = Candidates("als", ids, np.array([4.0, 3.0, 2.0, 1.0]))
    scorer = _scorer(catalog)
    scorer.page = PageConfig(source_weight=100.0)  # the row's own order outweighs the ranker
    (own,) = scorer.score_rows(ProfileContext(1, "US", 4), [row])
    assert own.title_ids.tolist() == ids.tolist()
    scorer.page = PageConfig(pinned_sources=("als",))
    (pinned,) = scorer.score_rows(ProfileContext(1, "US", 4), [row])
    assert pinned is row  # not re-scored at all


def test_a_learning_to_rank_list_overrides_the_ranker_for_its_profile(catalog):
    ids = np.array([101, 110, 105, 120], np.int64)
    row = Candidates("als", ids, np.array([4.0, 3.0, 2.0, 1.0]))
    ltr = {1: (np.array([105, 101, 110]), np.array([9.0, 5.0, 1.0], np.float32))}
    (scored,) = _scorer(catalog, ltr).score_rows(ProfileContext(1, "US", 4), [row])
    assert scored.title_ids.tolist() == [105, 101, 110, 120]  # listed titles by LTR, then the rest
    (other,) = _scorer(catalog, ltr).score_rows(ProfileContext(2, "US", 4), [row])
    assert other.title_ids.tolist() == [120, 110, 105, 101]  # no list: the ranker decides


class CountingStore(FakeStore):
    """FakeStore counting its catalog-wide reads."""

    def __init__(self, catalog):
        super().__init__(catalog)
        self.reads = 0

    def online_titles(self, ids):
        self.reads += 1
        return super().online_titles(ids)

    def online_trending(self, keys):
        self.reads += 1
        return pd.DataFrame({"title_region": keys, "trending_score": [float(len(k)) for k in keys]})


def test_preload_reads_the_catalog_once_for_every_scorer_and_scores_alike(catalog):
    first, second, cold = _scorer(catalog), _scorer(catalog), _scorer(catalog)
    for scorer in (first, second, cold):
        scorer.store = CountingStore(catalog)
    first.preload(["US", "BR"])
    second.preload(["US", "BR"], like=first)
    assert first.store.reads == 3 and second.store.reads == 0  # titles + two regions, then nothing
    profile = ProfileContext(1, "BR", 4)
    ids = np.array([101, 110, 105], np.int64)
    np.testing.assert_array_equal(second.score_titles(profile, ids), cold.score_titles(profile, ids))
    assert second.store.reads == 0
    assert np.array_equal(second._trend("BR"), cold._trend("BR"))


def test_counts_logged_before_the_gather_give_the_same_features(catalog):
    """The block path logs the count features once per profile and per title, then gathers its
    pairs (``feature_arrays(logged=True)``): the same matrix, bit for bit, as logging every pair,
    NaN, inf and negative counts included."""
    from ranking.features import COUNTS, feature_arrays, log_count

    rng = np.random.default_rng(3)
    n_titles, n_profiles, n = len(catalog), 5, 40
    special = np.array([np.nan, np.inf, -np.inf, -0.5, 0.0, 1e30], np.float32)

    def column(size):
        values = rng.gamma(1.0, 50.0, size).astype(np.float32)
        values[: len(special)] = special[:size]  # every odd value, where the column is long enough
        return values

    names = [*(f"p_{f}" for f in PROFILE_FEATURES if f != "genre_affinity"), *(f"t_{f}" for f in TITLE_FEATURES)]
    per_entity = {c: column(n_profiles if c.startswith("p_") else n_titles) for c in names}
    who, pos = rng.integers(0, n_profiles, n), rng.integers(0, n_titles, n)
    pick = {c: (who if c.startswith("p_") else pos) for c in names}
    trend = column(n_titles)
    affinity = rng.random((n, 2)).astype(np.float32)
    genres = rng.random((n_titles, 2)).astype(np.float32)
    at = np.full(n, 20_000.0)
    per_pair = feature_arrays({c: v[pick[c]] for c, v in per_entity.items()}, affinity, trend[pos], pos, at, catalog, genres)
    logged = {c: (log_count(v) if c in COUNTS else v)[pick[c]] for c, v in per_entity.items()}
    gathered = feature_arrays(logged, affinity, log_count(trend)[pos], pos, at, catalog, genres, logged=True)
    assert per_pair.dtype == gathered.dtype == np.float32
    assert np.array_equal(per_pair, gathered, equal_nan=True)
    unlogged = feature_arrays(logged, affinity, log_count(trend)[pos], pos, at, catalog, genres)  # logged twice
    assert not np.array_equal(per_pair, unlogged, equal_nan=True)
