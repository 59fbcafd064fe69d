"""Viewing history and playback state per profile, from the event log.

- ``playback_states(events, titles)``: per profile, the titles in progress (fraction watched and
  when it was last seen) and the titles finished.
- ``profile_histories(events)``: per profile, the titles played, oldest first.
- ``apply_event(state, event, runtime_s)``: one event folded into a state (the serving overlay).
- ``histories_by_range(lake_dir, titles, profile_ids, shard_profiles, work_dir)``: both of the
  above per range of ``shard_profiles`` profiles, from one pass that splits the lake's progress
  events by profile range (``features/lake_scan.py``): memory grows with a shard's events, not
  with the lake; time with the events (linear in profiles x events per profile).

Semantics (the batch functions equal a fold of ``apply_event`` over events in time order):
play, pause and complete events carry ``fraction_watched``; a heartbeat (or a pause without a
fraction) carries ``position_s``, read as ``position_s / runtime_s``. A ``complete`` event, or a
fraction >= ``finished_fraction``, finishes the title for good (a later re-watch does not bring
it back to in-progress). Otherwise the latest known fraction decides: >= ``min_fraction`` puts
the title in progress with that fraction and time, below it takes the title out. Events with no
readable fraction (and all other event types) change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.lake_scan import split_by_profile
from features.schema import EventType

PROGRESS_TYPES = (EventType.PLAY, EventType.PAUSE, EventType.COMPLETE, EventType.HEARTBEAT)


@dataclass(frozen=True)
class PlaybackState:
    """``in_progress``: title id -> (fraction watched, last seen as epoch seconds)."""

    in_progress: dict[int, tuple[float, float]] = field(default_factory=dict)
    finished: frozenset[int] = frozenset()


def event_fraction(event_type: str, fraction: float | None, position_s: float | None, runtime_s: float) -> float | None:
    """The fraction of the title an event says was watched, or None if it says nothing."""
    if event_type == EventType.COMPLETE:
        return 1.0 if fraction is None or np.isnan(fraction) else float(fraction)
    if fraction is not None and not np.isnan(fraction) and event_type != EventType.HEARTBEAT:
        return float(fraction)
    if position_s is not None and not np.isnan(position_s) and runtime_s > 0:
        return float(min(position_s / runtime_s, 1.0))
    return None


def apply_event(
    state: PlaybackState,
    event: Mapping[str, Any],
    runtime_s: float,
    finished_fraction: float = 0.9,
    min_fraction: float = 0.05,
) -> PlaybackState:
    """``state`` after ``event`` (a mapping with EVENT_SCHEMA keys; ``ts`` a datetime or epoch s)."""
    etype = str(event["event_type"])
    title = event.get("title_id")
    if etype not in PROGRESS_TYPES or title is None:
        return state
    title = int(title)
    if title in state.finished:
        return state
    frac = event_fraction(etype, event.get("fraction_watched"), event.get("position_s"), runtime_s)
    if frac is None:
        return state
    ts = event["ts"]
    ts = ts.timestamp() if isinstance(ts, datetime) else float(ts)
    in_progress = dict(state.in_progress)
    in_progress.pop(title, None)
    if etype == EventType.COMPLETE or frac >= finished_fraction:
        return PlaybackState(in_progress, state.finished | {title})
    if frac >= min_fraction:
        in_progress[title] = (frac, ts)
    return PlaybackState(in_progress, state.finished)


def _progress_frame(events: pa.Table, titles: pa.Table) -> pd.DataFrame:
    """Progress events with their fraction (NaN where unreadable), sorted by time."""
    cols = ["event_type", "ts", "profile_id", "title_id", "fraction_watched", "position_s"]
    table = events.select(cols)
    kind = table.column("event_type").cast(pa.string())
    keep = pc.and_(pc.is_in(kind, pa.array([t.value for t in PROGRESS_TYPES])), pc.is_valid(table.column("title_id")))
    table, kind = table.filter(keep), kind.filter(keep)  # in Arrow: no object compares
    is_complete = pc.equal(kind, EventType.COMPLETE.value).to_numpy(zero_copy_only=False)
    is_heartbeat = pc.equal(kind, EventType.HEARTBEAT.value).to_numpy(zero_copy_only=False)
    df = table.drop_columns(["event_type"]).to_pandas()
    runtime = pd.Series(
        titles["runtime_min"].to_numpy().astype(np.float64) * 60.0,
        index=titles["title_id"].to_numpy(),
    )
    runtime_s = df["title_id"].map(runtime).to_numpy(dtype=np.float64)
    frac = df["fraction_watched"].to_numpy(dtype=np.float64)
    from_pos = np.minimum(df["position_s"].to_numpy(dtype=np.float64) / runtime_s, 1.0)
    use_frac = ~np.isnan(frac) & ~is_heartbeat
    frac = np.where(use_frac, frac, from_pos)
    frac = np.where(is_complete & np.isnan(frac), 1.0, frac)
    df = df.assign(frac=frac, is_complete=is_complete, epoch_s=(df["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds())
    df["title_id"] = df["title_id"].astype(np.int64)
    return df.sort_values("ts", kind="stable")


def playback_states(
    events: pa.Table,
    titles: pa.Table,
    finished_fraction: float = 0.9,
    min_fraction: float = 0.05,
) -> dict[int, PlaybackState]:
    """Playback state of every profile with progress events (see the module docstring).
    Vectorized over (profile, title) pairs: one sort, then one slice per profile to build its
    dict and frozenset (no per-profile data frames)."""
    df = _progress_frame(events, titles)
    frac = df["frac"].to_numpy(np.float64)
    readable = ~np.isnan(frac)
    pid = df["profile_id"].to_numpy(np.int64)[readable]
    tid = df["title_id"].to_numpy(np.int64)[readable]
    frac, epoch_s = frac[readable], df["epoch_s"].to_numpy(np.float64)[readable]
    finishing = df["is_complete"].to_numpy(bool)[readable] | (frac >= finished_fraction)
    if not len(pid):
        return {}
    order = np.lexsort((np.arange(len(pid)), tid, pid))  # pairs together, each in time order
    p, t = pid[order], tid[order]
    starts = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (t[1:] != t[:-1])])
    ends = np.r_[starts[1:], len(p)] - 1
    done = np.logical_or.reduceat(finishing[order], starts)  # the pair was ever finished
    last = order[ends]  # each pair's last event (row in time order)
    going = ~done & (frac[last] >= min_fraction)
    going_rows = np.sort(last[going])  # in time order of their last event, as a fold inserts them
    going_rows = going_rows[np.argsort(pid[going_rows], kind="stable")]
    fin_p, fin_t = p[starts[done]], t[starts[done]]

    states: dict[int, PlaybackState] = {}
    fin_ids, fin_titles = _runs(fin_p, fin_t)
    finished = {pid_: frozenset(ts) for pid_, ts in zip(fin_ids, fin_titles)}
    g_ids, g_titles, g_fracs, g_times = _runs(pid[going_rows], tid[going_rows], frac[going_rows], epoch_s[going_rows])
    for pid_, ts, fs, ss in zip(g_ids, g_titles, g_fracs, g_times):
        states[pid_] = PlaybackState(dict(zip(ts, zip(fs, ss))), finished.pop(pid_, frozenset()))
    for pid_, fin in finished.items():
        states[pid_] = PlaybackState({}, fin)
    return states


def _runs(keys: np.ndarray, *columns: np.ndarray) -> tuple[list[Any], ...]:
    """(each run's key, then each column's values per run, as Python lists) for ``keys`` grouped
    in runs (sorted) and ``columns`` alike: the run bounds are found once for every column."""
    if not len(keys):
        return ([],) * (1 + len(columns))
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    bounds = np.r_[starts, len(keys)].tolist()
    cuts = list(zip(bounds[:-1], bounds[1:]))
    per_run = [[values[a:b] for a, b in cuts] for values in (c.tolist() for c in columns)]
    return (keys[starts].tolist(), *per_run)


def profile_histories(events: pa.Table) -> dict[int, tuple[int, ...]]:
    """Title ids each profile played, oldest first; a replayed title counts at its last play."""
    table = events.select(["event_type", "ts", "profile_id", "title_id"])
    table = table.filter(pc.and_(pc.equal(table.column("event_type").cast(pa.string()), EventType.PLAY.value),
                                 pc.is_valid(table.column("title_id"))))
    df = table.drop_columns(["event_type"]).to_pandas()
    df = df.sort_values(["profile_id", "ts"], kind="stable")
    df = df.drop_duplicates(["profile_id", "title_id"], keep="last")
    pids = df["profile_id"].to_numpy()
    tids = df["title_id"].to_numpy().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1]]) if len(pids) else np.zeros(0, int)
    return {
        int(pids[s]): tuple(int(t) for t in chunk)
        for s, chunk in zip(starts, np.split(tids, starts[1:]))
    }


HISTORY_COLUMNS = ("event_type", "ts", "profile_id", "title_id", "fraction_watched", "position_s")


def histories_by_range(
    lake_dir: Path | str,
    titles: pa.Table,
    profile_ids: np.ndarray,
    shard_profiles: int,
    work_dir: Path,
    finished_fraction: float = 0.9,
    min_fraction: float = 0.05,
) -> Iterator[tuple[int, dict[int, PlaybackState], dict[int, tuple[int, ...]]]]:
    """Per range of ``shard_profiles`` consecutive ids of ``profile_ids`` (sorted ascending): (the
    range's last profile id, ``playback_states``, ``profile_histories``) of its profiles, equal to
    what the whole lake gives them. One pass splits the lake into ``work_dir`` (a shard file is
    deleted once read); the ranges follow in order."""
    if len(profile_ids) == 0:
        return
    cuts = np.unique(np.r_[profile_ids[shard_profiles - 1::shard_profiles], profile_ids[-1]]).astype(np.int64)
    paths = split_by_profile(lake_dir, cuts, work_dir, HISTORY_COLUMNS, [t.value for t in PROGRESS_TYPES])
    for cut, path in zip(cuts, paths):
        events = pq.read_table(path)
        path.unlink()
        yield int(cut), playback_states(events, titles, finished_fraction, min_fraction), profile_histories(events)
