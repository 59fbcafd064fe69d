"""Per-profile metrics from the event log, day-by-day cumulative lifts, and the report from events."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from experiments.allocation import assign_cells
from experiments.lift import lift
from experiments.report import Report, analyze
from experiments.units import CELL, UNIT_ID, ExperimentDataError, Metric, RatioMetric
from pathways.config import ExperimentConfig

EVENT_METRICS = ("plays", "watch_fraction", "completes", "impressions")  # per profile, per window
PLAYS_PER_IMPRESSION = RatioMetric("plays_per_impression", "plays", "impressions")
DEFAULT_METRICS: tuple[Metric, ...] = (*EVENT_METRICS, PLAYS_PER_IMPRESSION)
_EVENT_COLUMNS = ("profile_id", "event_type", "ts", "fraction_watched")


def to_utc(value: object, name: str) -> pd.Timestamp:
    """``value`` (ISO 8601 string, datetime or Timestamp) as a UTC Timestamp; naive means UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from exc
    if pd.isna(ts):
        raise ValueError(f"{name}: not an ISO 8601 time: {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _event_frame(events: pa.Table) -> pd.DataFrame:
    missing = [c for c in _EVENT_COLUMNS if c not in events.column_names]
    if missing:
        raise ExperimentDataError(f"events lack column(s) {missing} (see features/schema.py EVENT_SCHEMA)")
    frame = events.select(list(_EVENT_COLUMNS)).to_pandas()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _unit_frame(profiles: pa.Table, config: ExperimentConfig) -> pd.DataFrame:
    """Every profile with its cell (and creation time when known), shape (n_profiles, 2-3)."""
    if "profile_id" not in profiles.column_names:
        raise ExperimentDataError(f"profiles lack column 'profile_id'; they have {profiles.column_names}")
    ids = np.asarray(profiles.column("profile_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    units = pd.DataFrame({UNIT_ID: ids, CELL: assign_cells(ids, config).astype(str)})
    if "created_at" in profiles.column_names:
        units["created_at"] = pd.to_datetime(profiles.column("created_at").to_pandas(), utc=True)
    return units.drop_duplicates(UNIT_ID).reset_index(drop=True)


def _window_counts(ev: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    """Per-profile EVENT_METRICS over events with lo <= ts < hi, indexed by profile_id."""
    w = ev[(ev["ts"] >= lo) & (ev["ts"] < hi)]
    is_play = (w["event_type"] == "play").to_numpy()
    per_event = pd.DataFrame(
        {
            UNIT_ID: w[UNIT_ID].to_numpy(),
            "plays": is_play.astype(np.int64),
            "watch_fraction": np.where(is_play, w["fraction_watched"].fillna(0.0).to_numpy(dtype=float), 0.0),
            "completes": (w["event_type"] == "complete").to_numpy().astype(np.int64),
            "impressions": (w["event_type"] == "impression").to_numpy().astype(np.int64),
        }
    )
    return per_event.groupby(UNIT_ID).sum()


def _metrics_frame(
    ev: pd.DataFrame, units: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp, pre: pd.Timestamp | None
) -> pd.DataFrame:
    if "created_at" in units.columns:
        units = units[units["created_at"] < hi]
    frame = units[[UNIT_ID, CELL]].reset_index(drop=True)
    windows = [("", lo, hi)] + ([("pre_", pre, lo)] if pre is not None else [])
    for prefix, a, b in windows:
        counts = _window_counts(ev, a, b).reindex(frame[UNIT_ID], fill_value=0)
        for col in EVENT_METRICS:
            frame[prefix + col] = counts[col].to_numpy()
    return frame


def _check_window(
    start: object, end: object, pre_start: object | None
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp | None]:
    """(start, end, pre_start) as UTC Timestamps, checked pre_start < start < end."""
    lo, hi = to_utc(start, "start"), to_utc(end, "end")
    if lo >= hi:
        raise ValueError(f"start ({lo.isoformat()}) must be before end ({hi.isoformat()})")
    pre = None if pre_start is None else to_utc(pre_start, "pre_start")
    if pre is not None and pre >= lo:
        raise ValueError(f"pre_start ({pre.isoformat()}) must be before start ({lo.isoformat()})")
    return lo, hi, pre


def metrics_from_events(
    events: pa.Table,
    profiles: pa.Table,
    config: ExperimentConfig,
    start: object,
    end: object,
    pre_start: object | None = None,
) -> pd.DataFrame:
    """The per-unit table from an event log (EVENT_SCHEMA) and profiles (PROFILE_SCHEMA).

    One row per profile created before ``end`` (intent to treat: profiles without events count
    as zeros), its cell from ``assign_cells``, and over ``start <= ts < end``: ``plays`` (play
    events), ``watch_fraction`` (sum of ``fraction_watched`` over plays; a minutes-watched
    proxy), ``completes`` and ``impressions``; with ``pre_start``, the same over
    ``pre_start <= ts < start`` as ``pre_<metric>`` covariates.
    """
    lo, hi, pre = _check_window(start, end, pre_start)
    return _metrics_frame(_event_frame(events), _unit_frame(profiles, config), lo, hi, pre)


def cumulative_lift(
    events: pa.Table,
    profiles: pa.Table,
    config: ExperimentConfig,
    metrics: Sequence[Metric],
    start: object,
    end: object,
    pre_start: object | None = None,
    *,
    alpha: float = 0.05,
    control: str = "control",
) -> pd.DataFrame:
    """Lift of each metric on the data from ``start`` through the end of each day.

    Returns one row per (day, metric, treatment): day (1-based), through (Timestamp), metric,
    treatment, diff, diff_lo, diff_hi, rel_lift, rel_lo, rel_hi, p_value. CUPED with
    ``pre_<metric>`` when ``pre_start`` is given. Days where a cell has too little data are left out.
    """
    lo, hi, pre = _check_window(start, end, pre_start)
    ev, units = _event_frame(events), _unit_frame(profiles, config)
    treatments = [c for c, s in sorted(config.cells.items()) if s > 0 and c != control]
    rows = []
    n_days = math.ceil((hi - lo) / pd.Timedelta(days=1))
    for day in range(1, n_days + 1):
        through = min(lo + pd.Timedelta(days=day), hi)
        frame = _metrics_frame(ev, units, lo, through, pre)
        for m in metrics:
            cov = f"pre_{m}" if pre is not None and isinstance(m, str) else None
            for t in treatments:
                try:
                    r = lift(frame, m, control, t, alpha, covariate=cov)
                except ExperimentDataError:
                    continue
                rows.append(
                    {
                        "day": day, "through": through, "metric": r.metric, "treatment": t,
                        "diff": r.diff, "diff_lo": r.diff_ci[0], "diff_hi": r.diff_ci[1],
                        "rel_lift": r.rel_lift, "rel_lo": r.rel_ci[0], "rel_hi": r.rel_ci[1],
                        "p_value": r.p_value,
                    }
                )
    return pd.DataFrame(rows, columns=_CUMULATIVE_COLUMNS)


_CUMULATIVE_COLUMNS = [
    "day", "through", "metric", "treatment", "diff", "diff_lo", "diff_hi",
    "rel_lift", "rel_lo", "rel_hi", "p_value",
]


def analyze_events(
    events: pa.Table,
    profiles: pa.Table,
    config: ExperimentConfig,
    start: object | None = None,
    end: object | None = None,
    pre_start: object | None = None,
    *,
    metrics: Sequence[Metric] = DEFAULT_METRICS,
    alpha: float = 0.05,
    control: str = "control",
    daily: bool = True,
) -> Report:
    """``metrics_from_events`` + ``analyze`` (+ ``cumulative_lift`` when ``daily``).

    start/end default to the first event and just after the last one; with ``pre_start``, every
    plain metric is CUPED-adjusted with its ``pre_<metric>`` column.
    """
    if events.num_rows == 0:
        raise ExperimentDataError("the event table is empty: nothing to analyse")
    if start is None:
        if pre_start is not None:
            raise ValueError("pre_start needs an explicit start (the pre-period ends where the test starts)")
        start = pd.Timestamp(events.column("ts").to_pandas().min())
    if end is None:
        end = pd.Timestamp(events.column("ts").to_pandas().max()) + pd.Timedelta(milliseconds=1)
    lo, hi, pre = _check_window(start, end, pre_start)
    frame = metrics_from_events(events, profiles, config, lo, hi, pre)
    covariates = {m: f"pre_{m}" for m in metrics if isinstance(m, str) and pre is not None and f"pre_{m}" in frame}
    report = analyze(frame, metrics, config, covariates, alpha=alpha, control=control)
    if not daily:
        return report
    cumulative = cumulative_lift(events, profiles, config, metrics, lo, hi, pre, alpha=alpha, control=control)
    return Report(report.experiment, report.alpha, report.cells, report.srm, report.results, cumulative)
