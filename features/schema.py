"""The versioned data contract of Pathways: events, titles and profiles as Arrow schemas.

Every producer (the synthetic world, the MovieLens loader, ``POST /api/v1/events``) writes these
schemas, and ingestion validates against them. Bump ``EVENT_SCHEMA_VERSION`` on any change and
keep readers of the previous version working.

Maturity is one integer scale everywhere (titles' ``maturity_level`` and profiles'
``max_maturity_level``): a title may be shown to a profile iff
``title.maturity_level <= profile.max_maturity_level``.
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

EVENT_SCHEMA_VERSION = 1


class EventType(StrEnum):
    """What happened. ``title_id`` is required for every type except ``search``."""

    IMPRESSION = "impression"  # a title was shown at (row_index, position)
    PLAY = "play"  # playback started; fraction_watched = how much of the title was watched
    PAUSE = "pause"
    COMPLETE = "complete"  # the title was watched to the end (fraction_watched ~ 1)
    RATING = "rating"  # rating in [0.5, 5.0]
    SEARCH = "search"  # query set, title_id null (or the title clicked from the results)
    ARTWORK_IMPRESSION = "artwork_impression"  # artwork_id shown, with its propensity
    ARTWORK_CLICK = "artwork_click"
    HEARTBEAT = "heartbeat"  # playback progress: position_s seconds into the title


EVENT_TYPES: tuple[str, ...] = tuple(e.value for e in EventType)

# The maturity scale (integers, ascending): names are for display only.
MATURITY_LEVELS: dict[int, str] = {
    0: "all",  # TV-Y / G
    1: "kids",  # TV-Y7 / PG
    2: "teen",  # TV-14 / PG-13
    3: "mature",  # TV-MA / R
    4: "adult",  # NC-17
}
KIDS_MAX_MATURITY = 1
MAX_MATURITY = max(MATURITY_LEVELS)

# Regions the world knows, with display names for row evidence ("Trending in Brazil").
REGIONS: dict[str, str] = {
    "US": "the United States",
    "BR": "Brazil",
    "GB": "the United Kingdom",
    "IN": "India",
    "JP": "Japan",
    "DE": "Germany",
    "MX": "Mexico",
    "FR": "France",
}

TS = pa.timestamp("ms", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),  # unique; duplicates are quarantined
        pa.field("event_type", pa.string(), nullable=False),  # one of EVENT_TYPES
        pa.field("ts", TS, nullable=False),  # when it happened (UTC)
        pa.field("profile_id", pa.int64(), nullable=False),
        pa.field("title_id", pa.int64()),  # null only for search
        pa.field("session_id", pa.string()),  # a viewing/browsing session
        pa.field("device", pa.string()),  # tv, mobile, web, tablet
        pa.field("row_index", pa.int32()),  # impressions: row on the page (0-based)
        pa.field("position", pa.int32()),  # impressions: column in the row (0-based)
        pa.field("fraction_watched", pa.float32()),  # play/complete/pause: in [0, 1]
        pa.field("position_s", pa.float32()),  # heartbeat/pause: seconds into the title, >= 0
        pa.field("rating", pa.float32()),  # rating: in [0.5, 5]
        pa.field("query", pa.string()),  # search
        pa.field("artwork_id", pa.int32()),  # artwork_*: the variant index shown
        pa.field("propensity", pa.float32()),  # artwork_impression: P(variant | context) in (0, 1]
        pa.field("policy_version", pa.string()),  # artwork_impression: which policy chose
    ],
    metadata={"pathways.event_schema_version": str(EVENT_SCHEMA_VERSION)},
)

TITLE_SCHEMA = pa.schema(
    [
        pa.field("title_id", pa.int64(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("genres", pa.list_(pa.string()), nullable=False),
        pa.field("cast", pa.list_(pa.string()), nullable=False),
        pa.field("release_date", pa.date32(), nullable=False),
        pa.field("runtime_min", pa.int32(), nullable=False),
        pa.field("maturity_level", pa.int8(), nullable=False),  # on the MATURITY_LEVELS scale
        pa.field("regions", pa.list_(pa.string()), nullable=False),  # where it is licensed
        # Artwork variants: index i of each list describes variant i (3 to 6 of them).
        pa.field("artwork_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("artwork_themes", pa.list_(pa.string()), nullable=False),  # genre/cast/mood
    ]
)

PROFILE_SCHEMA = pa.schema(
    [
        pa.field("profile_id", pa.int64(), nullable=False),
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("is_kids", pa.bool_(), nullable=False),
        pa.field("region", pa.string(), nullable=False),  # a key of REGIONS
        pa.field("max_maturity_level", pa.int8(), nullable=False),
        pa.field("devices", pa.list_(pa.string()), nullable=False),
        pa.field("created_at", TS, nullable=False),
    ]
)


def empty_events() -> pa.Table:
    """An empty table with the event schema."""
    return EVENT_SCHEMA.empty_table()
