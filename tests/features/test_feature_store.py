"""End to end on the real Feast stack (DuckDB offline, SQLite online), one store per module."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from features.compute import compute_features, day_end, impression_training_frame
from features.history import PlaybackState
from pathways.config import FeatureConfig
from tests.conftest import make_titles
from tests.features.builders import T0, event, events_table, make_profiles

pytestmark = pytest.mark.e2e
D0 = T0.date()
DAYS = [D0 + timedelta(days=d) for d in range(5)]
TTL_DAYS = 2


def _rows() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        kind = str(rng.choice(["play", "impression", "rating"]))
        kw = {"play": {"fraction_watched": float(rng.uniform())}, "rating": {"rating": 4.0},
              "impression": {"row_index": 0, "position": int(rng.integers(5))}}[kind]
        pid = int(rng.integers(1, 5))  # profiles 5 and 6 never act
        rows.append(event(i, kind, pid, int(rng.integers(100, 110)), float(rng.uniform(0, 24 * 5)), **kw))
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from features.store import FeatureStoreManager

    events = events_table(_rows())
    titles, profiles = make_titles(), make_profiles()
    # Profile 3 stops existing after day 0: only its day-0 snapshot is written.
    frames = compute_features(events, titles, profiles, DAYS)
    frames = type(frames)(
        frames.profiles[(frames.profiles["profile_id"] != 3) | (frames.profiles["event_timestamp"] == pd.Timestamp(day_end(D0)))],
        frames.titles, frames.title_regions, frames.genres,
    )
    # Two rows per online write: materialize's batches (Feast's online_write_batch_size) are exercised.
    config = FeatureConfig(project="pathways_test", ttl_days=TTL_DAYS, materialize_batch_rows=2)
    manager = FeatureStoreManager(config, tmp_path_factory.mktemp("repo"))
    manager.write_features(frames)
    manager.apply()
    manager.materialize(day_end(DAYS[-1]))
    return manager, frames, events


def test_historical_is_point_in_time_and_keeps_rows_and_order(setup):
    manager, frames, _ = setup
    late = pd.Timestamp(day_end(DAYS[-1]))
    entity = pd.DataFrame(
        {
            "profile_id": [2, 1, 3, 3, 99, 1, 2],
            "title_id": [101, 100, 100, 100, 100, 100, 101],
            "event_timestamp": [
                pd.Timestamp(day_end(DAYS[1])) + pd.Timedelta(hours=5),  # sees day 1, not day 2
                late,
                pd.Timestamp(day_end(D0)) + pd.Timedelta(hours=1),  # profile 3 within TTL
                late,  # profile 3 has rows, none within the TTL: nulls, row kept
                late,  # unknown profile
                pd.Timestamp(T0),  # before any snapshot
                pd.Timestamp(day_end(DAYS[1])) + pd.Timedelta(hours=5),  # a duplicate row
            ],
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    out = manager.historical(entity, "ranker_v1")
    assert len(out) == len(entity) and list(out.index) == list(entity.index)
    assert out["profile_id"].tolist() == entity["profile_id"].tolist()
    p = frames.profiles.set_index(["profile_id", "event_timestamp"])
    assert out.loc[10, "profile_stats__plays_28d"] == p.loc[(2, pd.Timestamp(day_end(DAYS[1]))), "plays_28d"]
    assert out.loc[10, "profile_stats__plays_28d"] != p.loc[(2, pd.Timestamp(day_end(DAYS[2]))), "plays_28d"]
    assert out.loc[11, "profile_stats__plays_28d"] == p.loc[(1, late), "plays_28d"]
    assert out.loc[12, "profile_stats__plays_28d"] == p.loc[(3, pd.Timestamp(day_end(D0))), "plays_28d"]
    assert out.loc[[13, 14, 15], "profile_stats__plays_28d"].isna().all()
    assert out.loc[10].drop("event_timestamp").equals(out.loc[16].drop("event_timestamp"))


def test_historical_on_the_impression_training_frame(setup):
    manager, _, events = setup
    rows = impression_training_frame(events)
    out = manager.historical(rows, "ranker_v1")
    assert len(out) == len(rows) > 20
    assert out["label"].tolist() == rows["label"].tolist()
    assert out["title_stats__ctr_28d"].notna().mean() > 0.5


def test_online_equals_offline_as_of_materialization(setup):
    manager, _, _ = setup
    ids = [1, 2, 4, 5]
    end = pd.Timestamp(day_end(DAYS[-1]))
    offline = manager.historical(pd.DataFrame({"profile_id": ids, "event_timestamp": end}), [
        "profile_stats:plays_28d", "profile_stats:days_since_last_play", "profile_stats:genre_affinity"])
    online = manager.online_profiles(ids)
    assert online["profile_id"].tolist() == ids
    assert online["plays_28d"].tolist() == offline["profile_stats__plays_28d"].tolist()
    np.testing.assert_allclose(online["days_since_last_play"], offline["profile_stats__days_since_last_play"])
    np.testing.assert_allclose(np.stack(online["genre_affinity"]), np.stack(offline["profile_stats__genre_affinity"]))
    titles = manager.online_titles([100, 12345])
    assert titles["plays_7d"].notna().tolist() == [True, False]


def test_only_what_is_read_online_is_materialized_the_rest_stays_offline(setup):
    import sqlite3

    from features.profile_vector import FIELDS, VECTOR
    from ranking.features import PROFILE_FEATURES

    manager, frames, _ = setup
    # The online store holds the ranker's profile features packed: one row per profile...
    with sqlite3.connect(manager.repo_dir / "online.db") as con:
        rows = con.execute("SELECT feature_name, COUNT(*), COUNT(DISTINCT entity_key) FROM pathways_test_profile_online "
                           "GROUP BY feature_name").fetchall()
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert [name for name, _, _ in rows] == [VECTOR] and rows[0][1] == rows[0][2] > 1  # one per profile
    assert set(PROFILE_FEATURES) == set(FIELDS)  # ...the vector holds what the ranker reads, unpacked on read
    assert "pathways_test_profile_activity" not in tables and "pathways_test_profile_stats" not in tables
    # ...and the training-only features are still read point in time offline, from the same snapshots.
    end = pd.Timestamp(day_end(DAYS[-1]))
    out = manager.historical(pd.DataFrame({"profile_id": [1, 2], "event_timestamp": end}),
                             ["profile_activity:plays_7d", "profile_activity:region", "profile_stats:plays_28d"])
    p = frames.profiles.set_index(["profile_id", "event_timestamp"])
    assert out["profile_activity__plays_7d"].tolist() == [p.loc[(i, end), "plays_7d"] for i in (1, 2)]
    assert out["profile_activity__region"].tolist() == [p.loc[(i, end), "region"] for i in (1, 2)]


def test_a_feature_dropped_from_an_online_view_leaves_no_rows_behind(tmp_path):
    """Feast keeps the online rows of a feature dropped from a view, and SQLite's online read returns
    (and parses) every row of an entity: ``apply`` resets a view whose features changed, and
    reports it so that the view is materialized in full again; an unchanged view is left alone."""
    import sqlite3

    from feast import Field
    from feast.types import Int64

    from features.profile_vector import VECTOR
    from features.store import FeatureStoreManager

    frames = compute_features(events_table(_rows()), make_titles(), make_profiles(), DAYS)
    manager = FeatureStoreManager(FeatureConfig(project="pathways_reset", ttl_days=TTL_DAYS), tmp_path)
    manager.write_features(frames)
    current = manager.definitions
    assert manager.apply() == []  # a new repo: nothing to reset

    def wider() -> list:  # the view as an older release declared it: one feature more
        defs = current()
        view = next(d for d in defs if getattr(d, "name", None) == "profile_online" and hasattr(d, "features"))
        view.schema.append(Field(name="plays_7d", dtype=Int64))
        view.features.append(Field(name="plays_7d", dtype=Int64))
        return defs

    def stored() -> set[str]:
        with sqlite3.connect(tmp_path / "online.db") as con:
            return {n for (n,) in con.execute("SELECT DISTINCT feature_name FROM pathways_reset_profile_online")}

    manager.definitions = wider  # type: ignore[method-assign]
    assert manager.apply() == ["profile_online"]
    manager.materialize(day_end(DAYS[-1]))
    assert stored() == {VECTOR, "plays_7d"}
    manager.definitions = current  # type: ignore[method-assign]
    assert manager.apply() == ["profile_online"]
    assert stored() == set()  # torn down with the old rows
    manager.materialize(day_end(DAYS[-1]))
    assert stored() == {VECTOR}
    before = manager.online_profiles([1, 2])
    assert manager.apply() == [] and stored() == {VECTOR}  # unchanged: kept as it is
    pd.testing.assert_frame_equal(manager.online_profiles([1, 2]), before)


def test_push_then_read_playback_state_and_unavailable_without_db(setup):
    from features.online import OnlineFeatureClient, OnlineStoreUnavailable

    manager, _, _ = setup
    client = OnlineFeatureClient(manager.repo_dir)
    assert client.playback_state(1) == PlaybackState()
    state = PlaybackState({100: (0.25, 1_790_000_000.0), 105: (0.5, 1_790_000_100.0)}, frozenset({101}))
    client.write_playback_state(1, state)
    assert client.playback_state(1) == state
    assert client.playback_state(2) == PlaybackState()
    assert client.profile_features(1)["plays_28d"] == manager.online_profiles([1])["plays_28d"][0]

    online_db = manager.repo_dir / "online.db"
    online_db.rename(online_db.with_suffix(".moved"))
    try:
        with pytest.raises(OnlineStoreUnavailable, match="online.db is missing"):
            client.playback_state(1)
        with pytest.raises(OnlineStoreUnavailable):
            OnlineFeatureClient(manager.repo_dir).profile_features(1)
    finally:
        online_db.with_suffix(".moved").rename(online_db)
    with pytest.raises(OnlineStoreUnavailable, match="no feature_store.yaml"):
        OnlineFeatureClient(manager.repo_dir / "nowhere").playback_state(1)


@pytest.mark.parametrize("online", ["sqlite", "redis"])
def test_feature_store_yaml_is_valid_feast_config(tmp_path, online):
    from feast.repo_config import load_repo_config

    from features.store import feature_store_yaml

    config = FeatureConfig(project="p_1", online_store=online, redis_connection="10.0.0.5:6390", materialize_batch_rows=7)
    (tmp_path / "feature_store.yaml").write_text(feature_store_yaml(config, tmp_path))
    repo = load_repo_config(tmp_path, tmp_path / "feature_store.yaml")
    assert repo.project == "p_1" and repo.offline_store.type == "duckdb"
    assert repo.materialization_config.online_write_batch_size == 7  # materialize's memory: one batch of protos
    assert repo.online_store.type == online
    if online == "redis":
        assert repo.online_store.connection_string.startswith("10.0.0.5:6390,socket_connect_timeout=")
    else:
        assert repo.online_store.path == str(tmp_path / "online.db")


def test_a_repo_of_the_unpacked_layout_is_torn_down_and_the_vector_view_reported_new(tmp_path):
    """A repo written before the profile features were packed held profile_stats online, one row per
    feature: ``apply`` tears those rows down (the view is offline now, and the file shrinks) and reports ``profile_online``,
    which nothing has materialized yet, so that the nightly materializes in full."""
    import sqlite3

    from features.profile_vector import VECTOR
    from features.store import FeatureStoreManager

    frames = compute_features(events_table(_rows()), make_titles(), make_profiles(), DAYS)
    manager = FeatureStoreManager(FeatureConfig(project="pathways_old", ttl_days=TTL_DAYS), tmp_path)
    manager.write_features(frames)
    current = manager.definitions

    def unpacked() -> list:  # the older release: profile_stats online, no vector view
        defs = [d for d in current() if getattr(d, "name", None) != "profile_online"]
        next(d for d in defs if getattr(d, "name", None) == "profile_stats" and hasattr(d, "features")).online = True
        return defs

    def tables() -> set[str]:
        with sqlite3.connect(tmp_path / "online.db") as con:
            return {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    manager.definitions = unpacked  # type: ignore[method-assign]
    assert manager.apply() == []
    manager.store.materialize(start_date=day_end(DAYS[0]) - timedelta(days=TTL_DAYS), end_date=day_end(DAYS[-1]),
                              feature_views=["profile_stats"])
    assert "pathways_old_profile_stats" in tables()
    with sqlite3.connect(tmp_path / "online.db") as con:  # a big world's rows: pages the new tables cannot reuse
        con.execute("INSERT INTO pathways_old_profile_stats (entity_key, feature_name, value) SELECT randomblob(16), 'filler', "
                    "randomblob(200) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i FROM n)")
    size = (tmp_path / "online.db").stat().st_size
    manager.definitions = current  # type: ignore[method-assign]
    assert manager.apply() == ["profile_online"]
    assert "pathways_old_profile_stats" not in tables()
    assert (tmp_path / "online.db").stat().st_size < size / 4  # its pages are given back (VACUUM), not kept free
    manager.materialize(day_end(DAYS[-1]))
    online = manager.online_profiles([1, 2, 999])
    offline = manager.historical(pd.DataFrame({"profile_id": [1, 2, 999], "event_timestamp": pd.Timestamp(day_end(DAYS[-1]))}),
                                 ["profile_stats:plays_28d", "profile_stats:is_kids"])
    assert online["plays_28d"].tolist()[:2] == offline["profile_stats__plays_28d"].tolist()[:2]
    assert online["is_kids"].tolist()[:2] == offline["profile_stats__is_kids"].tolist()[:2]
    assert np.isnan(online["plays_28d"][2]) and online["genre_affinity"][2] is None  # never seen
    with sqlite3.connect(tmp_path / "online.db") as con:
        assert {n for (n,) in con.execute("SELECT DISTINCT feature_name FROM pathways_old_profile_online")} == {VECTOR}
