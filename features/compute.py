"""Daily point-in-time feature snapshots, computed from the event log.

Each snapshot row describes an entity at the end of a day: ``event_timestamp`` is midnight UTC
that closes day ``d`` (the start of ``d + 1``) and the row uses only events with ``ts`` strictly
before it, so a Feast point-in-time join never sees an event from after its entity timestamp.

Three frames (``FeatureFrames``), ready to be written as Feast FileSources:

- ``profiles`` (entity ``profile_id``): plays / impressions / sessions started in the last 7 and
  28 days; ``play_through_rate_28d`` (share of plays watched to >= ``finished_fraction``) and
  ``mean_fraction_watched_28d``, both smoothed toward the day's global value; recency
  ``days_since_last_play`` (capped at ``NEVER_PLAYED_DAYS``); ``genre_affinity``, a float
  vector over ``FeatureFrames.genres`` (plays weighted by fraction watched, exponentially decayed
  with ``recency_half_life_days``, summing to 1, or all 0 before the first play); ``is_kids``,
  ``max_maturity_level``, ``region``. One row per profile per day from the day it was created.
- ``titles`` (entity ``title_id``): plays in 7/28 days, impressions in 28 days, a smoothed
  completion rate, a smoothed impression->play CTR (an impression converts when the profile
  plays the title within 24 h; the conversion counts on the day of the play, when it became
  known), a smoothed mean rating and the rating count. One row per title per day from release.
- ``title_regions`` (entity ``title_region``, the string ``"<title_id>:<region>"``, because a
  Feast entity has one join key): ``trending_score``, plays (by profiles of that region)
  exponentially decayed with ``trending_half_life_days``, and ``plays_7d``. Rows from the first
  play of the title in the region.

Smoothed rates are ``(k + m * p0) / (n + m)`` with ``m = PRIOR_WEIGHT`` and ``p0`` the global
rate over the same window as of the same day. Everything is vectorized over entities with numpy
(dense entity x day grids, ``features/daily_grid.py``; one short loop over days for decayed sums).

``compute_features`` computes the three frames from events in memory; ``features/compute_ranges.py``
computes the same tables from the lake in bounded memory with the same pieces: ``profile_features``
per range of profiles, ``TitleDaily`` and ``TitleRegionDaily`` summed over event sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.daily_grid import (
    Calendar,
    DayGrid,
    day_end,
    decayed,
    entity_index,
    feature_table,
    smoothed,
    window,
)
from features.schema import EventType
from pathways.config import FeatureConfig

__all__ = ["EVENT_COLUMNS", "FRAME_COLUMNS", "FeatureFrames", "TitleDaily", "TitleRegionDaily", "compute_features", "day_end",
           "events_frame", "genre_vocabulary", "impression_training_frame", "profile_features", "profile_rates"]

EVENT_COLUMNS = ("event_type", "ts", "profile_id", "title_id", "session_id", "fraction_watched", "rating",
                 "row_index", "position")  # what compute_features reads of the events
FRAME_COLUMNS = EVENT_COLUMNS[:7]  # those it reads into a pandas frame (the rest: for conversions)
NEVER_PLAYED_DAYS = 365.0


@dataclass(frozen=True)
class FeatureFrames:
    """Feature snapshots; each frame has its entity key column and ``event_timestamp`` (UTC)."""

    profiles: pd.DataFrame
    titles: pd.DataFrame
    title_regions: pd.DataFrame
    genres: tuple[str, ...]  # the order of ``genre_affinity``'s entries


def events_frame(events: pa.Table) -> pd.DataFrame:
    """``events`` as pandas with ``event_type`` categorical: its compares are on codes, not on
    Python strings (a tenth of the features' time at 100k profiles)."""
    if "event_type" in events.column_names and not pa.types.is_dictionary(events.schema.field("event_type").type):
        at = events.column_names.index("event_type")
        events = events.set_column(at, "event_type", pc.dictionary_encode(events.column("event_type")))
    return events.to_pandas()


def genre_vocabulary(titles: pa.Table) -> tuple[str, ...]:
    """All genres of the catalog, sorted: the order of ``genre_affinity``."""
    return tuple(sorted(set(titles["genres"].combine_chunks().flatten().to_pylist())))


def compute_features(
    events: pa.Table,
    titles: pa.Table,
    profiles: pa.Table,
    as_of_days: list[date] | None = None,
    config: FeatureConfig | None = None,
    finished_fraction: float = 0.9,
) -> FeatureFrames:
    """Daily snapshots for ``as_of_days`` (default: every day from the first to the last event),
    from ``events`` in memory (cost: the events as a pandas frame plus the entity x day grids)."""
    config = config or FeatureConfig()
    ev = events_frame(events.select(list(FRAME_COLUMNS)))
    span = (ev["ts"].min().date(), ev["ts"].max().date()) if len(ev) else (None, None)
    cal = Calendar.of(as_of_days, *span)
    ev = ev[ev["ts"] < cal.end].reset_index(drop=True)

    prof = profile_features(ev, titles, profiles, cal.grid, config, finished_fraction)
    title_daily = TitleDaily(titles, cal.grid)
    title_daily.add(ev, events, finished_fraction)
    regions = TitleRegionDaily(titles, profiles, cal.grid, config.trending_half_life_days)
    regions.add(ev[ev["event_type"] == EventType.PLAY])
    return FeatureFrames(
        profiles=feature_table("profile_id", profiles["profile_id"].to_numpy(), prof, cal).to_pandas(),
        titles=title_daily.table(cal).to_pandas(),
        title_regions=regions.table(cal).to_pandas(),
        genres=genre_vocabulary(titles),
    )


def _genre_shares(titles: pa.Table, genres: tuple[str, ...]) -> np.ndarray:
    """Each title's genres as weights summing to 1, shape (n_titles, n_genres)."""
    col = titles["genres"].combine_chunks()
    flat = np.asarray(col.flatten().to_pylist(), dtype=object)
    owner = np.asarray(pc.list_parent_indices(col))
    g = np.searchsorted(np.asarray(genres, dtype=object), flat) if len(flat) else np.zeros(0, int)
    shares = np.zeros((titles.num_rows, len(genres)))
    np.add.at(shares, (owner, g), 1.0)
    normalized: np.ndarray = shares / np.maximum(shares.sum(axis=1, keepdims=True), 1.0)
    return normalized


def _rates(ent: np.ndarray, day: np.ndarray, frac: np.ndarray, n: int, grid: DayGrid, finished_fraction: float
           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Windowed (numerator, denominator) of the smoothed rates from plays (their profile row, day
    and fraction watched), each (n, n_days)."""
    plays = grid.daily(ent, day, n)
    done = grid.daily(ent, day, n, (frac >= finished_fraction).astype(float))
    watched = grid.daily(ent, day, n, frac)
    return {"play_through_rate_28d": (window(done, 28), window(plays, 28)),
            "mean_fraction_watched_28d": (window(watched, 28), window(plays, 28))}


def profile_rates(ev: pd.DataFrame, profiles: pa.Table, grid: DayGrid, finished_fraction: float
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The smoothed profile rates' windowed (numerator, denominator) for ``profiles`` (every event of
    ``ev`` is theirs), each (n_profiles, n_days): ``profile_features``' ``totals`` are their column
    sums over every profile, in the profiles' order."""
    is_play = (ev["event_type"] == EventType.PLAY).to_numpy()
    plays = ev[is_play]
    ent = entity_index(profiles["profile_id"].to_numpy(), plays["profile_id"], "profile_id")
    frac = plays["fraction_watched"].fillna(0.0).to_numpy(np.float64)
    return _rates(ent, grid.day_index(plays["ts"]), frac, profiles.num_rows, grid, finished_fraction)


def profile_features(
    ev: pd.DataFrame, titles: pa.Table, profiles: pa.Table, grid: DayGrid, config: FeatureConfig,
    finished_fraction: float, totals: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """The features of ``profiles`` (every event of ``ev`` is theirs), each (n, n_days[, genres]);
    ``totals``: the rates' column sums over every profile (default: over ``profiles``)."""
    pids = profiles["profile_id"].to_numpy()
    n = len(pids)
    ent = entity_index(pids, ev["profile_id"], "profile_id")
    day = grid.day_index(ev["ts"])
    is_play = (ev["event_type"] == EventType.PLAY).to_numpy()
    is_imp = (ev["event_type"] == EventType.IMPRESSION).to_numpy()
    frac = ev["fraction_watched"].fillna(0.0).to_numpy(np.float64)

    plays = grid.daily(ent[is_play], day[is_play], n)
    imps = grid.daily(ent[is_imp], day[is_imp], n)
    first = ev[ev["session_id"].notna()].drop_duplicates("session_id")
    sessions = grid.daily(entity_index(pids, first["profile_id"], "profile_id"), grid.day_index(first["ts"]), n)

    out: dict[str, np.ndarray] = {}
    for w in (7, 28):
        out[f"plays_{w}d"] = window(plays, w).astype(np.int64)
        out[f"impressions_{w}d"] = window(imps, w).astype(np.int64)
        out[f"sessions_{w}d"] = window(sessions, w).astype(np.int64)
    for name, (k, m) in _rates(ent[is_play], day[is_play], frac[is_play], n, grid, finished_fraction).items():
        out[name] = smoothed(k, m, 0.5, None if totals is None else totals[name])

    # Recency: the last play's time, carried forward day by day.
    last = np.full((n, grid.n_days), -np.inf)
    play_ts = (ev["ts"][is_play] - grid.day0) / pd.Timedelta(days=1)
    np.maximum.at(last, (ent[is_play], day[is_play]), play_ts.to_numpy(np.float64))
    last = np.maximum.accumulate(last, axis=1)
    since = np.arange(1, grid.n_days + 1)[None, :] - last
    out["days_since_last_play"] = np.minimum(since, NEVER_PLAYED_DAYS).astype(np.float32)

    # Genre affinity: decayed, fraction-weighted plays spread over each title's genres.
    genres = genre_vocabulary(titles)
    tidx = entity_index(titles["title_id"].to_numpy(), ev["title_id"][is_play], "title_id")
    share = _genre_shares(titles, genres)[tidx]  # (plays, genres)
    weight = frac[is_play] * 0.5 ** (grid.age_at_day_end(ev["ts"][is_play]) / config.recency_half_life_days)
    per_genre = np.stack(
        [grid.daily(ent[is_play], day[is_play], n, weight * share[:, g]) for g in range(len(genres))],
        axis=2,
    )  # (n, days, genres)
    aff = decayed(per_genre, config.recency_half_life_days)
    total = aff.sum(axis=2, keepdims=True)
    out["genre_affinity"] = np.where(total > 0, aff / np.maximum(total, 1e-12), 0.0).astype(np.float32)

    out["is_kids"] = np.repeat(profiles["is_kids"].to_numpy(zero_copy_only=False)[:, None], grid.n_days, 1)
    out["max_maturity_level"] = np.repeat(profiles["max_maturity_level"].to_numpy().astype(np.int64)[:, None], grid.n_days, 1)
    out["region"] = np.repeat(np.asarray(profiles["region"].to_pylist(), dtype=object)[:, None], grid.n_days, 1)
    created = profiles["created_at"].to_pandas()
    out["_valid"] = (grid.day_index(created)[:, None] <= np.arange(grid.n_days)[None, :])
    return out


class TitleDaily:
    """Per-title daily sums, each (n_titles, n_days), over the event sets ``add``-ed (whole numbers
    or halves, so exact in any order): plays, impressions, finished plays, converted impressions
    (on the play's day), rating sum and count; ``table`` turns them into the ``titles`` table."""

    def __init__(self, titles: pa.Table, grid: DayGrid) -> None:
        self.titles, self.grid = titles, grid
        self.ids = titles["title_id"].to_numpy()
        names = ("plays", "imps", "done", "clicks", "rating_sum", "rating_count")
        self.sums = {name: np.zeros((len(self.ids), grid.n_days)) for name in names}

    def add(self, ev: pd.DataFrame, events: pa.Table, finished_fraction: float) -> None:
        """``ev``: events cut at the calendar's end; ``events``: the same profiles' events, uncut
        (an impression converts by a play up to a day later, counted if the play is in the grid)."""
        grid, n = self.grid, len(self.ids)
        has_title = ev["title_id"].notna().to_numpy()
        ent = np.full(len(ev), -1)
        ent[has_title] = entity_index(self.ids, ev["title_id"][has_title], "title_id")
        day = grid.day_index(ev["ts"])
        etype = ev["event_type"]
        frac = ev["fraction_watched"].fillna(0.0).to_numpy(np.float64)
        is_play, is_imp, is_rating = ((etype == t).to_numpy() for t in (EventType.PLAY, EventType.IMPRESSION, EventType.RATING))
        labels = impression_training_frame(events)
        conv = labels[labels["label"] == 1]
        conv = conv[conv["played_at"] < grid.day0 + pd.Timedelta(days=grid.n_days)]
        rating = ev["rating"].fillna(0.0).to_numpy(np.float64)
        parts = {
            "plays": grid.daily(ent[is_play], day[is_play], n),
            "imps": grid.daily(ent[is_imp], day[is_imp], n),
            "done": grid.daily(ent[is_play], day[is_play], n, (frac[is_play] >= finished_fraction).astype(float)),
            "clicks": grid.daily(entity_index(self.ids, conv["title_id"], "title_id"), grid.day_index(conv["played_at"]), n),
            "rating_sum": grid.daily(ent[is_rating], day[is_rating], n, rating[is_rating]),
            "rating_count": grid.daily(ent[is_rating], day[is_rating], n),
        }
        for name, part in parts.items():
            self.sums[name] += part

    def table(self, cal: Calendar) -> pa.Table:
        """The ``titles`` table: one row per title per output day from its release."""
        s, grid = self.sums, self.grid
        r_sum, r_cnt = np.cumsum(s["rating_sum"], axis=1), np.cumsum(s["rating_count"], axis=1)
        release = pd.Series(pd.to_datetime(self.titles["release_date"].to_pandas()), dtype="datetime64[ns]").dt.tz_localize("UTC")
        feats = {
            "plays_7d": window(s["plays"], 7).astype(np.int64),
            "plays_28d": window(s["plays"], 28).astype(np.int64),
            "impressions_28d": window(s["imps"], 28).astype(np.int64),
            "completion_rate_28d": smoothed(window(s["done"], 28), window(s["plays"], 28), 0.5),
            "ctr_28d": smoothed(window(s["clicks"], 28), window(s["imps"], 28), 0.05),
            "mean_rating": smoothed(r_sum, r_cnt, 3.5),
            "rating_count": r_cnt.astype(np.int64),
            "_valid": grid.day_index(release)[:, None] <= np.arange(grid.n_days)[None, :],
        }
        return feature_table("title_id", self.ids, feats, cal)


class TitleRegionDaily:
    """Plays per (title, region of the playing profile) and day, dense over titles x regions x days,
    with their trending weights. ``add`` adds the weights one play at a time in the order given
    (``np.add.at``), so batches added in lake order sum exactly as one pass over the lake does."""

    def __init__(self, titles: pa.Table, profiles: pa.Table, grid: DayGrid, half_life_days: float) -> None:
        self.grid, self.half_life = grid, half_life_days
        self.title_ids, self.pids = titles["title_id"].to_numpy(), profiles["profile_id"].to_numpy()
        region = np.asarray(profiles["region"].to_pylist(), dtype=object)
        self.regions = np.unique(region) if len(region) else np.zeros(0, object)
        self.profile_region = np.searchsorted(self.regions, region)
        self.cells = len(self.title_ids) * len(self.regions) * grid.n_days
        self.weights, self.counts = np.zeros(self.cells), np.zeros(self.cells)

    def add(self, plays: pd.DataFrame) -> None:
        """Play events (``ts``, ``profile_id``, ``title_id``), cut at the calendar's end."""
        region = self.profile_region[entity_index(self.pids, plays["profile_id"], "profile_id")]
        title = entity_index(self.title_ids, plays["title_id"], "title_id")
        cell = (title * len(self.regions) + region) * self.grid.n_days + self.grid.day_index(plays["ts"])
        np.add.at(self.weights, cell, 0.5 ** (self.grid.age_at_day_end(plays["ts"]) / self.half_life))
        self.counts += np.bincount(cell, minlength=self.cells)

    def table(self, cal: Calendar) -> pa.Table:
        """The ``title_regions`` table: one row per played (title, region) per output day from its
        first play there, ordered by the key ``"<title_id>:<region>"``."""
        shape = (len(self.title_ids) * len(self.regions), self.grid.n_days)
        counts, weights = self.counts.reshape(shape), self.weights.reshape(shape)
        played = np.flatnonzero(counts.sum(axis=1) > 0)
        tids = self.title_ids[played // max(len(self.regions), 1)].astype(np.int64)
        regions = self.regions[played % max(len(self.regions), 1)].astype(object)
        keys = np.asarray([f"{t}:{r}" for t, r in zip(tids.tolist(), regions)], dtype=object)
        order = np.argsort(keys.astype(str), kind="stable")
        played, keys, tids, regions = played[order], keys[order], tids[order], regions[order]
        feats: dict[str, np.ndarray] = {
            "trending_score": decayed(weights[played], self.half_life).astype(np.float32),
            "plays_7d": window(counts[played], 7).astype(np.int64),
            "_valid": np.cumsum(counts[played], axis=1) > 0,
        }
        return feature_table("title_region", keys, feats, cal, {"title_id": tids, "region": regions})


def impression_training_frame(events: pa.Table, within: timedelta = timedelta(hours=24)) -> pd.DataFrame:
    """The ranker's training rows: one per impression, labelled by whether it was played.

    Columns: ``profile_id``, ``title_id``, ``event_timestamp`` (the impression's time: feed the
    frame to ``FeatureStoreManager.historical`` as the entity frame), ``label`` (1 when the
    profile played the title within ``within`` after the impression, else 0), ``played_at``
    (that play's time, NaT if none), ``session_id``, ``row_index``, ``position``. Sorted by time.
    """
    cols = ["event_type", "ts", "profile_id", "title_id", "session_id", "row_index", "position"]
    df = events_frame(events.select(cols))
    imps = df[(df["event_type"] == EventType.IMPRESSION) & df["title_id"].notna()]
    plays = df[(df["event_type"] == EventType.PLAY) & df["title_id"].notna()]
    imps = imps.drop(columns="event_type").sort_values("ts", kind="stable")
    plays = plays[["ts", "profile_id", "title_id"]].rename(columns={"ts": "played_at"})
    plays = plays.sort_values("played_at", kind="stable")
    for frame in (imps, plays):
        frame["title_id"] = frame["title_id"].astype(np.int64)
    out = pd.merge_asof(
        imps, plays, left_on="ts", right_on="played_at", by=["profile_id", "title_id"],
        direction="forward", tolerance=pd.Timedelta(within),
    )
    out = out.rename(columns={"ts": "event_timestamp"})
    out["label"] = out["played_at"].notna().astype(np.int64)
    out[["row_index", "position"]] = out[["row_index", "position"]].astype("Int32")
    order = ["profile_id", "title_id", "event_timestamp", "label", "played_at", "session_id", "row_index", "position"]
    return out[order].reset_index(drop=True)
