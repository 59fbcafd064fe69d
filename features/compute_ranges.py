"""The daily feature tables of a whole event lake in bounded memory: profile ranges, summed grids.

``compute_features_by_range(lake_dir, titles, profiles, sink, work_dir, shard_profiles,
block_profiles)`` writes the same three tables as ``features.compute.compute_features`` on the
whole lake (equal values, rows in the same order when the profiles table is sorted by id), handing
them to ``sink(frame, table)`` piece by piece, so they never need to be in memory at once:

1. one pass over the lake's ``ts`` and ``profile_id``: the events' first and last day (the
   calendar) and a check that no event has a profile above the last known id;
2. one pass over the lake's plays, in lake order: the title x region trending grid
   (``TitleRegionDaily``, its weights added in the order one whole-lake pass adds them);
3. one pass splitting the lake by ranges of ``shard_profiles`` profiles
   (``features.lake_scan.split_by_profile``; skipped when one range holds every profile);
4. over the ranges' plays, block by block in profile order: the smoothed rates' column totals
   (the global daily rates the smoothing needs), summed row after row as one sum over every
   profile would;
5. over the ranges, ``block_profiles`` profiles at a time: the block's profile table goes to the
   sink and its events are added to the title grids (``TitleDaily``: whole-number sums, exact in
   any order); then the ``titles`` and ``title_regions`` tables.

Cost: time linear in the events (three passes over the lake, then its range shards written once
and read twice) plus (profiles x genres + titles x regions) x days, and a small fixed cost per
block (the catalog's genre shares); memory does not grow with the profiles or the events: one
range's events as Arrow (about 70 bytes an event, ``shard_profiles`` x events per profile), one
block's events as pandas with its profiles x days x genres grid, the title grids (titles x days)
and the title x region grid (titles x regions x days x 16 bytes); never the lake or a whole table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.compute import (
    EVENT_COLUMNS,
    FRAME_COLUMNS,
    TitleDaily,
    TitleRegionDaily,
    events_frame,
    profile_features,
    profile_rates,
)
from features.daily_grid import Calendar, feature_table
from features.lake_scan import iter_lake, read_lake, split_by_profile
from features.schema import EventType
from pathways.config import FeatureConfig

Sink = Callable[[str, pa.Table], None]  # (frame name: profiles / titles / title_regions, table)
RATE_COLUMNS = ("event_type", "ts", "profile_id", "fraction_watched")


@dataclass(frozen=True)
class LakeSpan:
    """How many events the lake holds and the first and last ``ts`` (None when empty)."""

    events: int
    first: datetime | None
    last: datetime | None


def lake_span(lake_dir: Path | str, last_profile: int | None = None) -> LakeSpan:
    """One pass over the lake's ``ts`` and ``profile_id`` (an event of a profile above
    ``last_profile`` is an error, as an unknown profile is to ``compute_features``)."""
    events, first, last = 0, None, None
    for batch in iter_lake(lake_dir, ("ts", "profile_id")):
        if not batch.num_rows:
            continue
        events += batch.num_rows
        low, high = pc.min_max(batch["ts"]).values()
        first = low.as_py() if first is None else min(first, low.as_py())
        last = high.as_py() if last is None else max(last, high.as_py())
        top = pc.max(batch["profile_id"]).as_py()
        if last_profile is not None and top > last_profile:
            raise ValueError(f"events reference unknown profile_id ids, e.g. [{top}]")
    return LakeSpan(events, first, last)


class _ColumnTotals:
    """Per rate, the column sums of (n, days) blocks added in profile order, bit-equal to one sum
    over their stack: numpy adds an (n, d > 1) array's rows one after another (so the running sum
    continues with the next block's rows); an (n, 1) array it sums pairwise, so those are kept."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, int], np.ndarray] = {}
        self.columns: dict[tuple[str, int], list[np.ndarray]] = {}

    def add(self, rates: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for name, pair in rates.items():
            for i, block in enumerate(pair):
                key = (name, i)
                if block.shape[1] == 1:
                    self.columns.setdefault(key, []).append(block)
                elif key in self.sums:
                    self.sums[key] = np.concatenate([self.sums[key][None, :], block]).sum(axis=0)
                else:
                    self.sums[key] = block.sum(axis=0)

    def totals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        sums = {**self.sums, **{key: np.concatenate(parts).sum(axis=0) for key, parts in self.columns.items()}}
        return {name: (sums[(name, 0)], sums[(name, 1)]) for name, _ in sums}


def _cut(table: pa.Table, cal: Calendar) -> pd.DataFrame:
    frame = events_frame(table)
    return frame[frame["ts"] < cal.end].reset_index(drop=True)


def _blocks(lake_dir: Path | str, shards: list[Path] | None, profiles: pa.Table, cuts: np.ndarray,
            block_profiles: int, columns: tuple[str, ...], event_types: tuple[str, ...] | None = None,
            ) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(events, profiles) per block of ``block_profiles`` consecutive profiles, in profile order; the
    events (lake order) are read range by range from ``shards`` (None: the lake is one range)."""
    pids = profiles["profile_id"].to_numpy()
    start = 0
    for k, cut in enumerate(cuts):
        if shards is None:
            events = read_lake(lake_dir, columns, event_types)
        else:
            events = pq.read_table(shards[k], columns=list(columns))
            if event_types is not None:
                events = events.filter(pc.is_in(events["event_type"], pa.array(list(event_types))))
        stop = int(np.searchsorted(pids, cut, side="right"))
        for lo in range(start, stop, block_profiles):
            hi = min(lo + block_profiles, stop)
            ids = events["profile_id"]
            inside = pc.less_equal(ids, int(pids[hi - 1]))
            if lo > 0:
                inside = pc.and_(inside, pc.greater(ids, int(pids[lo - 1])))
            yield events.filter(inside), profiles.slice(lo, hi - lo)
        start = stop
        del events  # before the next range is read: one range in memory at a time


def compute_features_by_range(
    lake_dir: Path | str,
    titles: pa.Table,
    profiles: pa.Table,
    sink: Sink,
    work_dir: Path,
    shard_profiles: int,
    block_profiles: int,
    config: FeatureConfig | None = None,
    finished_fraction: float = 0.9,
    as_of_days: list[date] | None = None,
) -> LakeSpan:
    """The feature tables of the lake at ``lake_dir`` into ``sink`` (see the module docstring);
    ``work_dir`` holds the range shards (deleted when done). Returns the lake's span."""
    config = config or FeatureConfig()
    profiles = profiles.sort_by("profile_id")
    pids = profiles["profile_id"].to_numpy()
    span = lake_span(lake_dir, int(pids[-1]) if len(pids) else None)
    if span.first is None and as_of_days is None:
        raise ValueError("the lake holds no accepted events: nothing to compute features from")
    cal = Calendar.of(as_of_days, *((span.first.date(), span.last.date()) if span.first and span.last else (None, None)))

    regions = TitleRegionDaily(titles, profiles, cal.grid, config.trending_half_life_days)
    for batch in iter_lake(lake_dir, ("ts", "profile_id", "title_id"), (EventType.PLAY.value,)):
        regions.add(_cut(batch, cal))

    cuts = np.unique(np.r_[pids[shard_profiles - 1::shard_profiles], pids[-1:]]).astype(np.int64)
    shards = split_by_profile(lake_dir, cuts, work_dir, EVENT_COLUMNS) if len(cuts) > 1 else None

    rates = _ColumnTotals()
    for events, block in _blocks(lake_dir, shards, profiles, cuts, block_profiles, RATE_COLUMNS, (EventType.PLAY.value,)):
        rates.add(profile_rates(_cut(events, cal), block, cal.grid, finished_fraction))
    totals = rates.totals()

    title_daily = TitleDaily(titles, cal.grid)
    for events, block in _blocks(lake_dir, shards, profiles, cuts, block_profiles, EVENT_COLUMNS):
        ev = _cut(events.select(list(FRAME_COLUMNS)), cal)
        feats = profile_features(ev, titles, block, cal.grid, config, finished_fraction, totals)
        sink("profiles", feature_table("profile_id", block["profile_id"].to_numpy(), feats, cal))
        title_daily.add(ev, events, finished_fraction)
    for path in shards or []:
        path.unlink(missing_ok=True)
    sink("titles", title_daily.table(cal))
    sink("title_regions", regions.table(cal))
    return span
