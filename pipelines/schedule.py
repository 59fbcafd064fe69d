"""Training that fits the nightly window: retrain on a schedule, train on a time window or a sample.

- ``reuse_trained(ctx)``: for each training stage with ``schedule.retrain_every_days[stage] = N > 0``
  and no result in this run yet, the result of the latest earlier run that trained it less than N
  days ago is recorded as this run's (its artifacts and MLflow versions; ``reused_from`` names the
  run), so the runner skips the stage. The deep models can train weekly while ALS and the rankers
  train nightly; the pages stage still covers every profile.
- ``training_events(ctx)``: what the training stages read: the lake's events, cut to the last
  ``schedule.window_days`` and to a sample of profiles chosen by a salted hash (the same profiles
  every night for one seed; ``sample_size``: ``schedule.sample_profiles``, or by default
  ``sample_above_profiles`` once the world is larger), or everything when neither applies; read
  batch by batch, so with a sample the training stages' cost stops growing with profiles.
- ``unsampled_histories(ctx)``: the profiles the sample left out, one profile range at a time (their
  positive events in the window), for the training stages to fold them into the trained models, so
  inference covers every profile. One split pass over the lake per run (shards under the run dir);
  memory one range of ``pipeline.history_shard_profiles`` profiles.
- ``last_materialized(ctx, end)``: where the online store's data ends, so the materialize stage
  loads only the new window (Feast materialize from there to ``end``).
- ``referenced_runs(ctx)``: earlier runs whose artifacts this run uses (kept by retention).
"""

from __future__ import annotations

import json
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


def _sampled(pids: np.ndarray, sample_profiles: int, seed: int) -> pa.Array:
    """The ``sample_profiles`` ids of ``pids`` (unique) with the smallest salted hash, sorted."""
    order = np.argsort([bucket(int(p), f"training-sample-{seed}") for p in pids], kind="stable")
    return pa.array(np.sort(pids[order[:sample_profiles]]))


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


def sample_size(schedule: ScheduleConfig, n_profiles: int | None) -> int | None:
    """How many profiles training samples: ``sample_profiles``, else ``sample_above_profiles`` when the
    world holds more profiles than that (``n_profiles`` None: unknown, the sample applies), else None."""
    if schedule.sample_profiles is not None:
        return schedule.sample_profiles
    above = schedule.sample_above_profiles
    return above if above is not None and (n_profiles is None or n_profiles > above) else None


def training_sample(lake_dir: Path, window_days: float | None, sample_profiles: int | None, seed: int) -> TrainingSample:
    """The window's start and the sample (see ``TrainingSample``): one cheap pass over ``ts`` for the
    window's end, one over ``ts`` / ``profile_id`` for its profiles. Memory: the profile ids."""
    start = None
    if window_days is not None:
        ends = [pc.max(t["ts"]).as_py() for t in iter_lake(lake_dir, ["ts"]) if t.num_rows]
        start = _window_start(max(ends), window_days, EVENT_SCHEMA.field("ts").type) if ends else None
    if sample_profiles is None:
        return TrainingSample(start, None, np.zeros(0, np.int64))
    seen = [pc.unique(t["profile_id"].filter(pc.greater_equal(t["ts"], start)) if start is not None else t["profile_id"])
            for t in iter_lake(lake_dir, ["ts", "profile_id"])]
    pids = pc.unique(pa.chunked_array([s.cast(pa.int64()) for s in seen], pa.int64())).to_numpy() if seen else np.zeros(0, np.int64)
    if len(pids) <= sample_profiles:
        return TrainingSample(start, None, np.zeros(0, np.int64))
    keep = _sampled(pids, sample_profiles, seed)
    return TrainingSample(start, keep, np.sort(np.setdiff1d(pids, keep.to_numpy())).astype(np.int64))


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


def _sample(ctx: RunContext) -> TrainingSample:
    if "training_sample" not in ctx.cache:
        cfg = ctx.config.schedule
        size = sample_size(cfg, _profile_count(ctx))
        ctx.cache["training_sample"] = (training_sample(ctx.config.lake_dir, cfg.window_days, size, cfg.sample_seed)
                                        if cfg.window_days is not None or size is not None else None)
    sample: TrainingSample | None = ctx.cache["training_sample"]
    return sample or TrainingSample(None, None, np.zeros(0, np.int64))


def training_events(ctx: RunContext) -> pa.Table:
    """The lake's events as the training stages should see them (cached for the run's training
    stages; the pages stage drops them)."""
    if "training_events" not in ctx.cache:
        ctx.cache["training_events"] = read_training_events(ctx.config.lake_dir, None, None, 0, _sample(ctx))
    events: pa.Table = ctx.cache["training_events"]
    return events


def unsampled_histories(ctx: RunContext) -> Callable[[], Iterator[pa.Table]] | None:
    """None when training reads every profile; else a function yielding, one profile range at a
    time, the positive events (``FOLD_IN_COLUMNS``, in the window) of the profiles the sample left
    out. The first call splits the lake once into ``<run dir>/unsampled-histories`` (reused by the
    later training stages and on resume; the pages stage deletes it). Cost: one pass over the
    lake; memory one range of ``pipeline.history_shard_profiles`` profiles' events."""
    sample = _sample(ctx)
    if not len(sample.left_out):
        return None
    out = ctx.run_dir / UNSAMPLED_DIR

    def tables() -> Iterator[pa.Table]:
        if not (out / "done").is_file():
            shutil.rmtree(out, ignore_errors=True)
            step = ctx.config.pipeline.history_shard_profiles
            cuts = np.unique(np.r_[sample.left_out[step - 1::step], sample.left_out[-1]])
            split_by_profile(ctx.config.lake_dir, cuts, out, FOLD_IN_COLUMNS, POSITIVE_TYPES)
            (out / "done").write_text(str(len(cuts)))
        for path in sorted(out.glob("shard-*.parquet")):
            table = _cut(pq.read_table(path), sample, keep=False)
            if table.num_rows:
                yield table

    return tables
