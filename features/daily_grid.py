"""Dense entity x day grids of the daily feature tables: the calendar, windowed, decayed and smoothed
sums, and the long table of output rows (one per entity per day).

A grid has one row per entity and one column per day from ``day0``; a cell sums the events of that
entity on that day (``DayGrid.daily``, ``np.bincount``: the events are added in the order given).
``Calendar`` says which days are output and where events stop (``day_end`` of the last output day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

PRIOR_WEIGHT = 5.0


def day_end(day: date) -> datetime:
    """The moment that closes ``day``: midnight UTC starting the next day."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


class DayGrid:
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


@dataclass(frozen=True)
class Calendar:
    """The days of one computation: the grid's columns and the output days among them."""

    grid: DayGrid
    keep: np.ndarray  # the grid columns of the output days, shape (n_out,)
    stamps: pd.DatetimeIndex  # their event_timestamps (each day's end)
    end: pd.Timestamp  # the last output day's end: events at or after it are left out

    @classmethod
    def of(cls, as_of_days: list[date] | None, first: date | None, last: date | None) -> Calendar:
        """``as_of_days`` (default: every day from ``first`` to ``last``, the events' first and
        last days, both None when there are no events)."""
        if as_of_days is None:
            if first is None or last is None:
                raise ValueError("no events and no as_of_days: nothing to compute")
            as_of_days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        days = sorted(set(as_of_days))
        day0 = min([days[0], *([first] if first is not None else [])])
        return cls(DayGrid(day0, (days[-1] - day0).days + 1), np.array([(d - day0).days for d in days]),
                   pd.DatetimeIndex([day_end(d) for d in days]).as_unit("ns"), pd.Timestamp(day_end(days[-1])))


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


def smoothed(k: np.ndarray, n: np.ndarray, default: float,
             totals: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(k + m p0) / (n + m) per cell, p0 the global k/n of each day (column), shape (e, days).

    ``totals``: the column sums of ``k`` and ``n`` over every entity, when ``k`` and ``n`` hold
    only some of them (default: their own column sums)."""
    tot_k, tot_n = totals if totals is not None else (k.sum(axis=0), n.sum(axis=0))
    p0 = np.where(tot_n > 0, tot_k / np.maximum(tot_n, 1e-12), default)
    return ((k + PRIOR_WEIGHT * p0) / (n + PRIOR_WEIGHT)).astype(np.float32)


def entity_index(ids: np.ndarray, values: pd.Series, what: str) -> np.ndarray:
    """Positions of ``values`` in ``ids``, shape (len(values),); unknown values are an error."""
    order = np.argsort(ids)
    vals = values.to_numpy(np.int64)
    pos = np.clip(np.searchsorted(ids, vals, sorter=order), 0, max(len(ids) - 1, 0))
    found: np.ndarray = order[pos] if len(ids) else pos
    unknown = ~(ids[found] == vals) if len(ids) else np.ones(len(vals), bool)
    if unknown.any():
        raise ValueError(f"events reference unknown {what} ids, e.g. {sorted(set(vals[unknown].tolist()))[:5]}")
    return found


def _arrow(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()) if values.dtype == object else pa.array(values)


def feature_table(key: str, ids: np.ndarray, feats: dict[str, np.ndarray], cal: Calendar,
                  per_entity: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Long table of the output days: one row per (entity, day) where ``feats["_valid"]`` (entities
    in ``ids``' order, then days); columns ``key``, ``per_entity``'s (a value per entity),
    ``event_timestamp`` (UTC), then ``feats`` but those named ``_*`` (a 3-d one: a list per row)."""
    n, keep = len(ids), cal.keep
    valid = feats["_valid"][:, keep].reshape(-1)
    cols: dict[str, pa.Array] = {key: _arrow(np.repeat(ids, len(keep))[valid])}
    for name, values in (per_entity or {}).items():
        cols[name] = _arrow(np.repeat(values, len(keep))[valid])
    stamps = np.tile(cal.stamps.tz_localize(None).to_numpy(), n)[valid]
    cols["event_timestamp"] = pa.array(stamps, pa.timestamp("ns", "UTC"))
    for name, arr in feats.items():
        if name.startswith("_"):
            continue
        sel = arr[:, keep]
        if sel.ndim == 3:  # a vector per cell
            flat = np.ascontiguousarray(sel.reshape(n * len(keep), -1)[valid])
            offsets = pa.array(np.arange(len(flat) + 1, dtype=np.int32) * flat.shape[1])
            cols[name] = pa.ListArray.from_arrays(offsets, pa.array(flat.reshape(-1)))
        else:
            cols[name] = _arrow(sel.reshape(-1)[valid])
    return pa.table(cols)
