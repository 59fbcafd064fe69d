"""Training that fits the nightly window: retrain on a schedule, train on a time window or a sample.

- ``reuse_trained(ctx)``: for each training stage with ``schedule.retrain_every_days[stage] = N > 0``
  and no result in this run yet, the result of the latest earlier run that trained it less than N
  days ago is recorded as this run's (its artifacts and MLflow versions; ``reused_from`` names the
  run), so the runner skips the stage. The deep models can train weekly while ALS and the rankers
  train nightly; the pages stage still covers every profile.
- ``training_events(ctx, stage)``: what a training stage reads: the lake's events, cut to the last
  ``schedule.window_days`` and to a sample of profiles chosen by a salted hash (the same profiles
  every night for one seed; ``sample_size``: ``schedule.sample_profiles``, or by default
  ``sample_above_profiles`` once the world is larger, each capped per stage by
  ``schedule.stage_sample_profiles``, a cap that grows to ``stage_sample_share`` of a large world),
  or everything when neither applies; read batch by batch,
  so with a sample the training stages' cost stops growing with profiles (the capped ones grow by
  4% of the profiles past 500,000). Samples are nested:
  every size takes the first profiles of one hash order, so a smaller stage's sample is a subset of
  a larger one's and is cut from the larger table already in memory (one read of the lake).
- ``unsampled_histories(ctx, stage)``: the profiles that stage's sample left out, one profile range
  at a time (their positive events in the window), for the stage to fold them into its trained
  models, so inference covers every profile. One split pass over the lake per run, for the
  smallest sample of the fold-in stages (its left-out profiles include every other stage's: shards
  under the run dir); each stage reads the shards without the profiles of its own sample. Memory
  one range of ``pipeline.history_shard_profiles`` profiles.
- ``last_materialized(ctx, end)``: where the online store's data ends, so the materialize stage
  loads only the new window (Feast materialize from there to ``end``).
- ``referenced_runs(ctx)``: earlier runs whose artifacts this run uses (kept by retention).

How each training stage's cost grows with the profiles P it trains on (S: sampled; the rest,
P - S, are folded in, linear in their plays) at a fixed number of titles T:

- ``train_als``: per iteration linear in the plays plus (S + T) x factors^2: linear in S, and
  cheap (about 20 s at 100k profiles, all of them): the general rule.
- ``train_retrieval`` (SASRec, two-tower): epochs x the training interactions (each a transformer
  / tower step): linear in S with a large constant (more than 18 minutes at 100k profiles): capped
  at 20,000 profiles by default; the fold-in is one forward pass per left-out profile.
- ``train_top_row`` (``PathwaysFinal``): its generators include SASRec and two-tower (as above),
  plus candidates and features per sampled profile and the EASE solve (T^3, not profiles): linear
  in S with the deep models' constant: capped at 20,000 profiles by default; the left-out profiles'
  lists come from the fitted generators' inference on their histories. With the same sample as
  ``train_retrieval`` (the default caps), it takes that stage's SASRec instead of fitting it again.
- ``train_ranker``: the impressions of S profiles, capped at ``training.ranker_max_rows`` rows:
  bounded; ``artwork``: linear in the impressions of S profiles.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from experiments.allocation import bucket
from features.lake_scan import iter_lake, read_lake, split_by_profile
from features.schema import EVENT_SCHEMA
from pathways.config import ScheduleConfig
from pipelines.runner import RunContext
from training.data import POSITIVE_TYPES

SECONDS_PER_DAY = 86_400.0


def _trained_at(marker: Any) -> float:
    outputs = json.loads(marker.read_text())["outputs"]
    return float(outputs.get("trained_at") or marker.stat().st_mtime)


def reuse_trained(ctx: RunContext, now: float | None = None) -> dict[str, str]:
    """Record earlier runs' still-fresh training results in this run (see the module docstring);
    returns stage -> the run reused."""
    now = time.time() if now is None else now
    reused: dict[str, str] = {}
    runs = [p for p in ctx.config.runs_dir.iterdir() if p.is_dir() and p.name != ctx.run_id] if ctx.config.runs_dir.is_dir() else []
    for stage, days in ctx.config.schedule.retrain_every_days.items():
        mine = ctx.run_dir / f"{stage}.done.json"
        if days <= 0 or mine.is_file():
            continue
        fresh = [(at, p) for p in runs if (p / f"{stage}.done.json").is_file()
                 and now - (at := _trained_at(p / f"{stage}.done.json")) < days * SECONDS_PER_DAY]
        if not fresh:
            continue
        trained_at, source = max(fresh)
        outputs = json.loads((source / f"{stage}.done.json").read_text())["outputs"]
        outputs = {**outputs, "reused_from": outputs.get("reused_from") or source.name, "trained_at": trained_at}
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = mine.with_suffix(".tmp")
        tmp.write_text(json.dumps({"outputs": outputs, "seconds": 0.0}, indent=2, default=str))
        os.replace(tmp, mine)
        reused[stage] = outputs["reused_from"]
    return reused


def last_materialized(ctx: RunContext, end: datetime) -> datetime | None:
    """Where the online store's data ends: the latest ``materialized_until`` of an earlier run that is
    before ``end`` (None: never materialized, or the embedded online store is gone: load the whole TTL)."""
    cfg = ctx.config
    if cfg.features.online_store == "sqlite" and not (cfg.feature_repo_dir / "online.db").is_file():
        return None
    ends = []
    for marker in cfg.runs_dir.glob("*/materialize.done.json") if cfg.runs_dir.is_dir() else []:
        if marker.parent.name == ctx.run_id:
            continue
        until = json.loads(marker.read_text())["outputs"].get("materialized_until")
        if until and datetime.fromisoformat(until) < end:
            ends.append(datetime.fromisoformat(until))
    return max(ends, default=None)


def referenced_runs(ctx: RunContext) -> set[str]:
    """This run and every earlier run whose training results it reuses."""
    return {ctx.run_id} | {str(o["reused_from"]) for o in ctx.outputs.values() if o.get("reused_from")}


def _window_start(end: datetime, window_days: float, ts_type: pa.DataType) -> pa.Scalar:
    return pa.scalar(end - timedelta(days=window_days), ts_type)


def _ranked(pids: np.ndarray, seed: int) -> np.ndarray:
    """``pids`` (unique) by their salted hash: a sample of n profiles is the first n."""
    return pids[np.argsort([bucket(int(p), f"training-sample-{seed}") for p in pids], kind="stable")].astype(np.int64)


def _sampled(pids: np.ndarray, sample_profiles: int, seed: int) -> pa.Array:
    """The ``sample_profiles`` ids of ``pids`` (unique) with the smallest salted hash, sorted."""
    return pa.array(np.sort(_ranked(pids, seed)[:sample_profiles]))


def sample_events(events: pa.Table, window_days: float | None, sample_profiles: int | None, seed: int) -> pa.Table:
    """``events`` cut to the last ``window_days`` before its last event and to ``sample_profiles``
    profiles (those with the smallest salted hash: stable as profiles come and go)."""
    if window_days is not None and events.num_rows:
        start = _window_start(pc.max(events.column("ts")).as_py(), window_days, events.schema.field("ts").type)
        events = events.filter(pc.greater_equal(events.column("ts"), start))
    if sample_profiles is not None:
        pids = pc.unique(events.column("profile_id")).to_numpy()
        if len(pids) > sample_profiles:
            events = events.filter(pc.is_in(events.column("profile_id"), _sampled(pids, sample_profiles, seed)))
    return events


TRAINING_COLUMNS = tuple(name for name in EVENT_SCHEMA.names if name != "event_id")  # no trainer reads the id
FOLD_IN_COLUMNS = ("event_type", "profile_id", "title_id", "ts", "fraction_watched")  # what fold-in reads
UNSAMPLED_DIR = "unsampled-histories"


@dataclass(frozen=True)
class TrainingSample:
    """What the training stages read: events from ``start`` on (None: all), of the ``keep`` profiles
    (None: every profile); ``left_out`` (sorted int64) the profiles of the window outside the sample."""

    start: pa.Scalar | None
    keep: pa.Array | None
    left_out: np.ndarray


FOLD_IN_STAGES = ("train_als", "train_retrieval", "train_top_row")  # the stages that fold the left-out in


def sample_size(schedule: ScheduleConfig, n_profiles: int | None, stage: str | None = None) -> int | None:
    """How many profiles ``stage`` samples: ``sample_profiles``, else ``sample_above_profiles`` when the
    world holds more profiles than that (``n_profiles`` None: unknown, the sample applies), else None;
    capped by ``stage_sample_profiles[stage]`` (the smaller of the two), a cap raised to
    ``stage_sample_share`` of ``n_profiles`` where that is more."""
    if schedule.sample_profiles is not None:
        size: int | None = schedule.sample_profiles
    else:
        above = schedule.sample_above_profiles
        size = above if above is not None and (n_profiles is None or n_profiles > above) else None
    cap = schedule.stage_sample_profiles.get(stage) if stage is not None else None
    if cap is not None and n_profiles is not None:
        cap = max(cap, math.ceil(schedule.stage_sample_share * n_profiles))
    return cap if size is None else size if cap is None else min(size, cap)


@dataclass(frozen=True)
class WindowProfiles:
    """The window's start (None: all events) and its profiles ranked by the salted hash: the sample
    of n profiles is the first n (so samples are nested)."""

    start: pa.Scalar | None
    ranked: np.ndarray

    def sample(self, sample_profiles: int | None) -> TrainingSample:
        """The ``TrainingSample`` of ``sample_profiles`` profiles (None, or at least all: everything)."""
        if sample_profiles is None or len(self.ranked) <= sample_profiles:
            return TrainingSample(self.start, None, np.zeros(0, np.int64))
        return TrainingSample(self.start, pa.array(np.sort(self.ranked[:sample_profiles])),
                              np.sort(self.ranked[sample_profiles:]).astype(np.int64))


def window_profiles(lake_dir: Path, window_days: float | None, seed: int, profiles: bool = True) -> WindowProfiles:
    """One cheap pass over ``ts`` for the window's end, one over ``ts`` / ``profile_id`` for its
    profiles (``profiles`` False: not needed, none). Memory: the profile ids."""
    start = None
    if window_days is not None:
        ends = [pc.max(t["ts"]).as_py() for t in iter_lake(lake_dir, ["ts"]) if t.num_rows]
        start = _window_start(max(ends), window_days, EVENT_SCHEMA.field("ts").type) if ends else None
    if not profiles:
        return WindowProfiles(start, np.zeros(0, np.int64))
    seen = [pc.unique(t["profile_id"].filter(pc.greater_equal(t["ts"], start)) if start is not None else t["profile_id"])
            for t in iter_lake(lake_dir, ["ts", "profile_id"])]
    pids = pc.unique(pa.chunked_array([s.cast(pa.int64()) for s in seen], pa.int64())).to_numpy() if seen else np.zeros(0, np.int64)
    return WindowProfiles(start, _ranked(pids, seed))


def training_sample(lake_dir: Path, window_days: float | None, sample_profiles: int | None, seed: int) -> TrainingSample:
    """The window's start and the sample of ``sample_profiles`` profiles (see ``TrainingSample``,
    ``window_profiles``)."""
    return window_profiles(lake_dir, window_days, seed, sample_profiles is not None).sample(sample_profiles)


def _cut(table: pa.Table, sample: TrainingSample, keep: bool = True) -> pa.Table:
    """``table``'s rows in the window, of the sampled profiles (``keep``) or of the others."""
    if sample.start is not None:
        table = table.filter(pc.greater_equal(table["ts"], sample.start))
    if sample.keep is not None:
        inside = pc.is_in(table["profile_id"], sample.keep)
        table = table.filter(inside if keep else pc.invert(inside))
    return table


def read_training_events(lake_dir: Path, window_days: float | None, sample_profiles: int | None, seed: int,
                         sample: TrainingSample | None = None) -> pa.Table:
    """``sample_events`` of the lake (without ``event_id``), read batch by batch: memory grows with
    the sample and the window, not with the lake (``training_sample`` finds the window and its
    profiles first, unless ``sample`` gives them). Time: linear in the lake's events."""
    if sample is None and window_days is None and sample_profiles is None:
        return read_lake(lake_dir, TRAINING_COLUMNS)
    sample = sample or training_sample(lake_dir, window_days, sample_profiles, seed)
    if sample.start is None and sample.keep is None:
        return read_lake(lake_dir, TRAINING_COLUMNS)
    parts = [_cut(table, sample) for table in iter_lake(lake_dir, TRAINING_COLUMNS)]
    return pa.concat_tables(parts) if parts else pa.schema([EVENT_SCHEMA.field(c) for c in TRAINING_COLUMNS]).empty_table()


def _profile_count(ctx: RunContext) -> int | None:
    path = ctx.config.raw_dir / "world" / "profiles.parquet"
    return pq.ParquetFile(path).metadata.num_rows if path.is_file() else None


def _size(ctx: RunContext, stage: str) -> int | None:
    return sample_size(ctx.config.schedule, _profile_count(ctx), stage)


def _sample_of(ctx: RunContext, size: int | None) -> TrainingSample:
    """The run's sample of ``size`` profiles (the window's profiles found once per run)."""
    cfg = ctx.config.schedule
    if cfg.window_days is None and size is None:
        return TrainingSample(None, None, np.zeros(0, np.int64))
    ranked = size is not None  # the window's profiles are needed
    if "training_window" not in ctx.cache or (ranked and not ctx.cache["training_window_ranked"]):
        ctx.cache["training_window"] = window_profiles(ctx.config.lake_dir, cfg.window_days, cfg.sample_seed, ranked)
        ctx.cache["training_window_ranked"] = ranked
    window: WindowProfiles = ctx.cache["training_window"]
    return window.sample(size)


def _sample(ctx: RunContext, stage: str) -> TrainingSample:
    return _sample_of(ctx, _size(ctx, stage))


def training_events(ctx: RunContext, stage: str) -> pa.Table:
    """The lake's events as training stage ``stage`` should see them (cached per sample size for the
    run's training stages; a smaller sample is cut from a larger one in memory; the pages stage
    drops them)."""
    sample = _sample(ctx, stage)
    key = None if sample.keep is None else len(sample.keep)
    cached: dict[int | None, pa.Table] = ctx.cache.setdefault("training_events", {})
    if key not in cached:
        wider = [k for k in cached if k is None or (key is not None and k > key)]
        if wider:  # nested samples: ours is inside every larger one
            source = cached[None] if None in wider else cached[min(k for k in wider if k is not None)]
            cached[key] = source.filter(pc.is_in(source["profile_id"], sample.keep)) if sample.keep is not None else source
        else:
            cached[key] = read_training_events(ctx.config.lake_dir, None, None, 0, sample)
    return cached[key]


def unsampled_histories(ctx: RunContext, stage: str) -> Callable[[], Iterator[pa.Table]] | None:
    """None when ``stage`` trains on every profile; else a function yielding, one profile range at a
    time, the positive events (``FOLD_IN_COLUMNS``, in the window) of the profiles its sample left
    out. The first call splits the lake once into ``<run dir>/unsampled-histories``, for the
    smallest sample of ``FOLD_IN_STAGES`` (whose left-out profiles hold every stage's), reused by
    the later training stages and on resume; the pages stage deletes it. Cost: one pass over the
    lake; memory one range of ``pipeline.history_shard_profiles`` profiles' events."""
    sample = _sample(ctx, stage)
    if not len(sample.left_out):
        return None
    out = ctx.run_dir / UNSAMPLED_DIR
    sizes = [size for s in FOLD_IN_STAGES if (size := _size(ctx, s)) is not None]
    widest = _sample_of(ctx, min(sizes)) if sizes else sample
    if len(widest.left_out) < len(sample.left_out):  # a stage outside FOLD_IN_STAGES: its own sample
        widest = sample

    def tables() -> Iterator[pa.Table]:
        if not (out / "done").is_file():
            shutil.rmtree(out, ignore_errors=True)
            step = ctx.config.pipeline.history_shard_profiles
            left_out = widest.left_out
            cuts = np.unique(np.r_[left_out[step - 1::step], left_out[-1]])
            split_by_profile(ctx.config.lake_dir, cuts, out, FOLD_IN_COLUMNS, POSITIVE_TYPES)
            (out / "done").write_text(str(len(cuts)))
        for path in sorted(out.glob("shard-*.parquet")):
            table = _cut(pq.read_table(path), sample, keep=False)
            if table.num_rows:
                yield table

    return tables
