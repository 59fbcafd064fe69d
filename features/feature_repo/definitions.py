"""Pathways' Feast definitions: entities, sources, feature views and one service per model.

``FeatureStoreManager`` copies this module into the feature repo next to ``feature_store.yaml``
and a ``settings.json`` (``{"ttl_days": ...}``), so ``feast apply`` run in that folder and
``FeatureStoreManager.apply()`` register the same objects. Sources are the Parquet files under
``<repo>/data/`` that ``FeatureStoreManager.write_features`` writes (columns: see
``features/compute.py``). Load it only from a feature repo, never as ``features.feature_repo``.

Trending is keyed by ``title_region`` (the string ``"<title_id>:<region>"``) because a Feast
entity has exactly one join key; the frame also carries ``title_id`` and ``region`` columns.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bool, Float32, Int64, String

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
TTL = timedelta(days=int(json.loads((HERE / "settings.json").read_text())["ttl_days"]))

profile = Entity(name="profile", join_keys=["profile_id"], value_type=ValueType.INT64)
title = Entity(name="title", join_keys=["title_id"], value_type=ValueType.INT64)
title_region = Entity(name="title_region", join_keys=["title_region"], value_type=ValueType.STRING)


def _source(name: str) -> FileSource:
    return FileSource(name=f"{name}_source", path=str(DATA / f"{name}.parquet"), timestamp_field="event_timestamp")


# Every snapshot of a profile's features, one column each: read point in time offline (training).
profile_stats = FeatureView(
    name="profile_stats",
    entities=[profile],
    ttl=TTL,
    schema=[
        Field(name="plays_28d", dtype=Int64),
        Field(name="impressions_28d", dtype=Int64),
        Field(name="play_through_rate_28d", dtype=Float32),
        Field(name="mean_fraction_watched_28d", dtype=Float32),
        Field(name="days_since_last_play", dtype=Float32),
        Field(name="genre_affinity", dtype=Array(Float32), description="order: data/genres.json"),
        Field(name="is_kids", dtype=Bool),
        Field(name="max_maturity_level", dtype=Int64),
    ],
    source=_source("profile_stats"),
    online=False,
)

# What the ranker and the artwork policy read online: the same features packed into one vector per
# snapshot (features/profile_vector.py), so Feast's online write and read cost one row a profile, not
# one a feature. Only online views are materialized: the nightly's largest write at scale.
profile_online = FeatureView(
    name="profile_online",
    entities=[profile],
    ttl=TTL,
    schema=[Field(name="profile_vector", dtype=Array(Float32),
                  description="features.profile_vector.FIELDS: 7 scalars (NaN: null), then genre_affinity (data/genres.json)")],
    source=profile_stats.batch_source,
    online=True,
)

# The rest of the same snapshots, for training and analysis only (point-in-time reads offline).
profile_activity = FeatureView(
    name="profile_activity",
    entities=[profile],
    ttl=TTL,
    schema=[
        Field(name="plays_7d", dtype=Int64),
        Field(name="impressions_7d", dtype=Int64),
        Field(name="sessions_7d", dtype=Int64),
        Field(name="sessions_28d", dtype=Int64),
        Field(name="region", dtype=String),
    ],
    source=profile_stats.batch_source,
    online=False,
)

title_stats = FeatureView(
    name="title_stats",
    entities=[title],
    ttl=TTL,
    schema=[
        Field(name="plays_7d", dtype=Int64),
        Field(name="plays_28d", dtype=Int64),
        Field(name="impressions_28d", dtype=Int64),
        Field(name="completion_rate_28d", dtype=Float32),
        Field(name="ctr_28d", dtype=Float32),
        Field(name="mean_rating", dtype=Float32),
        Field(name="rating_count", dtype=Int64),
    ],
    source=_source("title_stats"),
    online=True,
)

title_region_trending = FeatureView(
    name="title_region_trending",
    entities=[title_region],
    ttl=TTL,
    schema=[Field(name="trending_score", dtype=Float32), Field(name="plays_7d", dtype=Int64)],
    source=_source("title_region_trending"),
    online=True,
)

# Real-time playback state, pushed by serving as events arrive (never expires).
profile_playback_push = PushSource(name="profile_playback_push", batch_source=_source("profile_playback"))
profile_playback = FeatureView(
    name="profile_playback",
    entities=[profile],
    ttl=timedelta(0),
    schema=[
        Field(name="in_progress_title_ids", dtype=Array(Int64)),
        Field(name="in_progress_fractions", dtype=Array(Float32)),
        Field(name="in_progress_updated", dtype=Array(Int64), description="epoch seconds"),
        Field(name="finished_title_ids", dtype=Array(Int64)),
    ],
    source=profile_playback_push,
    online=True,
)

# One service per model version.
ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[
        profile_stats,
        title_stats,
    ],
)
trending_v1 = FeatureService(name="trending_v1", features=[title_region_trending])
