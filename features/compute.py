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
(dense entity x day grids, one short loop over days for the decayed sums).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import EventType
from pathways.config import FeatureConfig

EVENT_COLUMNS = ("event_type", "ts", "profile_id", "title_id", "session_id", "fraction_watched", "rating",
                 "row_index", "position")  # what compute_features reads of the events
NEVER_PLAYED_DAYS = 365.0
PRIOR_WEIGHT = 5.0


@dataclass(frozen=True)
class FeatureFrames:
    """Feature snapshots; each frame has its entity key column and ``event_timestamp`` (UTC)."""

    profiles: pd.DataFrame
    titles: pd.DataFrame
    title_regions: pd.DataFrame
    genres: tuple[str, ...]  # the order of ``genre_affinity``'s entries


def day_end(day: date) -> datetime:
    """The moment that closes ``day``: midnight UTC starting the next day."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def genre_vocabulary(titles: pa.Table) -> tuple[str, ...]:
    """All genres of the catalog, sorted: the order of ``genre_affinity``."""
    return tuple(sorted(set(titles["genres"].combine_chunks().flatten().to_pylist())))


class _Grid:
    """Maps events to (entity, day) cells of a dense ``(n_entities, n_days)`` grid."""

    def __init__(self, day0: date, n_days: int) -> None:
        self.day0 = pd.Timestamp(day0, tz="UTC")
        self.n_days = n_days

    def day_index(self, ts: pd.Series) -> np.ndarray:
        index: np.ndarray = ((ts.dt.floor("D") - self.day0) // pd.Timedelta(days=1)).to_numpy(np.int64)
        return index

    def age_at_day_end(self, ts: pd.Series) -> np.ndarray:
        """Days from each event to the end of its day, in (0, 1]."""
        end = ts.dt.floor("D") + pd.Timedelta(days=1)
        age: np.ndarray = ((end - ts) / pd.Timedelta(days=1)).to_numpy(np.float64)
        return age

    def daily(self, ent: np.ndarray, day: np.ndarray, n_ent: int, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-cell sums of ``weights`` (or counts), shape (n_ent, n_days)."""
        flat = np.bincount(ent * self.n_days + day, weights=weights, minlength=n_ent * self.n_days)
        return flat.reshape(n_ent, self.n_days).astype(np.float64)


def window(daily: np.ndarray, days: int) -> np.ndarray:
    """Sums over the last ``days`` days including each day, shape like ``daily`` (n, n_days)."""
    cs = np.cumsum(daily, axis=1)
    out = cs.copy()
    out[:, days:] -= cs[:, :-days]
    return out


def decayed(daily: np.ndarray, half_life_days: float) -> np.ndarray:
    """Running decayed sums along axis 1 (days): s[d] = s[d-1] * 0.5**(1/half_life) + daily[d].

    ``daily`` has shape (n, n_days) or (n, n_days, k); the result has the same shape.
    """
    decay = 0.5 ** (1.0 / half_life_days)
    out = np.empty_like(daily)
    acc = np.zeros_like(daily[:, 0])
    for d in range(daily.shape[1]):
        acc = acc * decay + daily[:, d]
        out[:, d] = acc
    return out


def smoothed(k: np.ndarray, n: np.ndarray, default: float) -> np.ndarray:
    """(k + m p0) / (n + m) per cell, p0 the global k/n of each day (column), shape (e, days)."""
    tot_k, tot_n = k.sum(axis=0), n.sum(axis=0)
    p0 = np.where(tot_n > 0, tot_k / np.maximum(tot_n, 1e-12), default)
    return ((k + PRIOR_WEIGHT * p0) / (n + PRIOR_WEIGHT)).astype(np.float32)


def compute_features(
    events: pa.Table,
    titles: pa.Table,
    profiles: pa.Table,
    as_of_days: list[date] | None = None,
    config: FeatureConfig | None = None,
    finished_fraction: float = 0.9,
) -> FeatureFrames:
    """Daily snapshots for ``as_of_days`` (default: every day from the first to the last event)."""
    config = config or FeatureConfig()
    ev = events.select(["event_type", "ts", "profile_id", "title_id", "session_id", "fraction_watched", "rating"]).to_pandas()
    if as_of_days is None:
        if ev.empty:
            raise ValueError("no events and no as_of_days: nothing to compute")
        first, last = ev["ts"].min().date(), ev["ts"].max().date()
        as_of_days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    days = sorted(set(as_of_days))
    day0 = min([days[0], *([ev["ts"].min().date()] if len(ev) else [])])
    grid = _Grid(day0, (days[-1] - day0).days + 1)
    ev = ev[ev["ts"] < pd.Timestamp(day_end(days[-1]))].reset_index(drop=True)
    keep = np.array([(d - day0).days for d in days])
    stamps = pd.DatetimeIndex([day_end(d) for d in days]).as_unit("ns")

    prof = _profile_features(ev, titles, profiles, grid, config, finished_fraction)
    titl = _title_features(ev, titles, events, grid, finished_fraction)
    treg = _title_region_features(ev, profiles, grid, config)
    return FeatureFrames(
        profiles=_to_frame("profile_id", profiles["profile_id"].to_numpy(), prof, keep, stamps),
        titles=_to_frame("title_id", titles["title_id"].to_numpy(), titl, keep, stamps),
        title_regions=_title_region_frame(treg, keep, stamps),
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


def _index(ids: np.ndarray, values: pd.Series, what: str) -> np.ndarray:
    """Positions of ``values`` in ``ids``, shape (len(values),); unknown values are an error."""
    order = np.argsort(ids)
    vals = values.to_numpy(np.int64)
    pos = np.clip(np.searchsorted(ids, vals, sorter=order), 0, max(len(ids) - 1, 0))
    found: np.ndarray = order[pos] if len(ids) else pos
    unknown = ~(ids[found] == vals) if len(ids) else np.ones(len(vals), bool)
    if unknown.any():
        raise ValueError(f"events reference unknown {what} ids, e.g. {sorted(set(vals[unknown].tolist()))[:5]}")
    return found


def _profile_features(
    ev: pd.DataFrame, titles: pa.Table, profiles: pa.Table, grid: _Grid, config: FeatureConfig, finished_fraction: float
) -> dict[str, np.ndarray]:
    pids = profiles["profile_id"].to_numpy()
    n = len(pids)
    ent = _index(pids, ev["profile_id"], "profile_id")
    day = grid.day_index(ev["ts"])
    is_play = (ev["event_type"] == EventType.PLAY).to_numpy()
    is_imp = (ev["event_type"] == EventType.IMPRESSION).to_numpy()
    frac = ev["fraction_watched"].fillna(0.0).to_numpy(np.float64)

    plays = grid.daily(ent[is_play], day[is_play], n)
    imps = grid.daily(ent[is_imp], day[is_imp], n)
    first = ev[ev["session_id"].notna()].drop_duplicates("session_id")
    sessions = grid.daily(_index(pids, first["profile_id"], "profile_id"), grid.day_index(first["ts"]), n)
    done = grid.daily(ent[is_play], day[is_play], n, (frac[is_play] >= finished_fraction).astype(float))
    watched = grid.daily(ent[is_play], day[is_play], n, frac[is_play])

    out: dict[str, np.ndarray] = {}
    for w in (7, 28):
        out[f"plays_{w}d"] = window(plays, w).astype(np.int64)
        out[f"impressions_{w}d"] = window(imps, w).astype(np.int64)
        out[f"sessions_{w}d"] = window(sessions, w).astype(np.int64)
    out["play_through_rate_28d"] = smoothed(window(done, 28), window(plays, 28), 0.5)
    out["mean_fraction_watched_28d"] = smoothed(window(watched, 28), window(plays, 28), 0.5)

    # Recency: the last play's time, carried forward day by day.
    last = np.full((n, grid.n_days), -np.inf)
    play_ts = (ev["ts"][is_play] - grid.day0) / pd.Timedelta(days=1)
    np.maximum.at(last, (ent[is_play], day[is_play]), play_ts.to_numpy(np.float64))
    last = np.maximum.accumulate(last, axis=1)
    since = np.arange(1, grid.n_days + 1)[None, :] - last
    out["days_since_last_play"] = np.minimum(since, NEVER_PLAYED_DAYS).astype(np.float32)

    # Genre affinity: decayed, fraction-weighted plays spread over each title's genres.
    genres = genre_vocabulary(titles)
    tidx = _index(titles["title_id"].to_numpy(), ev["title_id"][is_play], "title_id")
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


def _title_features(
    ev: pd.DataFrame, titles: pa.Table, events: pa.Table, grid: _Grid, finished_fraction: float
) -> dict[str, np.ndarray]:
    tids = titles["title_id"].to_numpy()
    n = len(tids)
    has_title = ev["title_id"].notna().to_numpy()
    ent = np.full(len(ev), -1)
    ent[has_title] = _index(tids, ev["title_id"][has_title], "title_id")
    day = grid.day_index(ev["ts"])
    etype = ev["event_type"].to_numpy()
    frac = ev["fraction_watched"].fillna(0.0).to_numpy(np.float64)
    is_play, is_imp, is_rating = (etype == EventType.PLAY), (etype == EventType.IMPRESSION), (etype == EventType.RATING)

    plays = grid.daily(ent[is_play], day[is_play], n)
    imps = grid.daily(ent[is_imp], day[is_imp], n)
    done = grid.daily(ent[is_play], day[is_play], n, (frac[is_play] >= finished_fraction).astype(float))
    labels = impression_training_frame(events)
    conv = labels[labels["label"] == 1]
    conv = conv[conv["played_at"] < grid.day0 + pd.Timedelta(days=grid.n_days)]
    clicks = grid.daily(_index(tids, conv["title_id"], "title_id"), grid.day_index(conv["played_at"]), n)
    rating = ev["rating"].fillna(0.0).to_numpy(np.float64)
    r_sum = np.cumsum(grid.daily(ent[is_rating], day[is_rating], n, rating[is_rating]), axis=1)
    r_cnt = np.cumsum(grid.daily(ent[is_rating], day[is_rating], n), axis=1)

    release = pd.Series(pd.to_datetime(titles["release_date"].to_pandas()), dtype="datetime64[ns]").dt.tz_localize("UTC")
    return {
        "plays_7d": window(plays, 7).astype(np.int64),
        "plays_28d": window(plays, 28).astype(np.int64),
        "impressions_28d": window(imps, 28).astype(np.int64),
        "completion_rate_28d": smoothed(window(done, 28), window(plays, 28), 0.5),
        "ctr_28d": smoothed(window(clicks, 28), window(imps, 28), 0.05),
        "mean_rating": smoothed(r_sum, r_cnt, 3.5),
        "rating_count": r_cnt.astype(np.int64),
        "_valid": grid.day_index(release)[:, None] <= np.arange(grid.n_days)[None, :],
    }


def _title_region_features(ev: pd.DataFrame, profiles: pa.Table, grid: _Grid, config: FeatureConfig) -> dict[str, np.ndarray]:
    plays = ev[ev["event_type"] == EventType.PLAY]
    region_of = pd.Series(profiles["region"].to_pylist(), index=profiles["profile_id"].to_numpy())
    keys = plays["title_id"].astype(np.int64).astype(str) + ":" + plays["profile_id"].map(region_of)
    uniq, ent = np.unique(keys.to_numpy(dtype=str), return_inverse=True)
    day = grid.day_index(plays["ts"])
    weight = 0.5 ** (grid.age_at_day_end(plays["ts"]) / config.trending_half_life_days)
    counts = grid.daily(ent, day, len(uniq))
    return {
        "_keys": uniq,
        "trending_score": decayed(grid.daily(ent, day, len(uniq), weight), config.trending_half_life_days).astype(np.float32),
        "plays_7d": window(counts, 7).astype(np.int64),
        "_valid": np.cumsum(counts, axis=1) > 0,
    }


def _to_frame(
    key: str, ids: np.ndarray, feats: dict[str, np.ndarray], keep: np.ndarray, stamps: pd.DatetimeIndex
) -> pd.DataFrame:
    """Long frame of the kept days: one row per (entity, day) where ``_valid``."""
    n = len(ids)
    valid = feats["_valid"][:, keep].reshape(-1)
    cols: dict[str, object] = {
        key: np.repeat(ids, len(keep))[valid],
        "event_timestamp": np.tile(stamps, n)[valid],
    }
    for name, arr in feats.items():
        if name.startswith("_"):
            continue
        sel = arr[:, keep]
        if sel.ndim == 3:  # a vector per cell
            cols[name] = list(sel.reshape(n * len(keep), -1)[valid])
        else:
            cols[name] = sel.reshape(-1)[valid]
    frame = pd.DataFrame(cols)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame.reset_index(drop=True)


def _title_region_frame(feats: dict[str, np.ndarray], keep: np.ndarray, stamps: pd.DatetimeIndex) -> pd.DataFrame:
    keys = feats["_keys"]
    frame = _to_frame("title_region", keys.astype(object), feats, keep, stamps)
    parts = frame["title_region"].str.split(":", n=1, expand=True)
    frame.insert(1, "title_id", parts[0].astype(np.int64) if len(frame) else pd.Series([], dtype=np.int64))
    frame.insert(2, "region", parts[1] if len(frame) else pd.Series([], dtype=object))
    return frame


def impression_training_frame(events: pa.Table, within: timedelta = timedelta(hours=24)) -> pd.DataFrame:
    """The ranker's training rows: one per impression, labelled by whether it was played.

    Columns: ``profile_id``, ``title_id``, ``event_timestamp`` (the impression's time: feed the
    frame to ``FeatureStoreManager.historical`` as the entity frame), ``label`` (1 when the
    profile played the title within ``within`` after the impression, else 0), ``played_at``
    (that play's time, NaT if none), ``session_id``, ``row_index``, ``position``. Sorted by time.
    """
    cols = ["event_type", "ts", "profile_id", "title_id", "session_id", "row_index", "position"]
    df = events.select(cols).to_pandas()
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
