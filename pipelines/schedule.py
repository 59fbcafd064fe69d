"""Training that fits the nightly window: retrain on a schedule, train on a time window or a sample.

- ``reuse_trained(ctx)``: for each training stage with ``schedule.retrain_every_days[stage] = N > 0``
  and no result in this run yet, the result of the latest earlier run that trained it less than N
  days ago is recorded as this run's (its artifacts and MLflow versions; ``reused_from`` names the
  run), so the runner skips the stage. The deep models can train weekly while ALS and the rankers
  train nightly; the pages stage still covers every profile.
- ``training_events(ctx)``: what the training stages read: the lake's events, cut to the last
  ``schedule.window_days`` and to ``schedule.sample_profiles`` profiles chosen by a salted hash
  (the same profiles every night for one seed), or everything when neither is set; read batch by
  batch, so with a sample the training stages' cost stops growing with profiles.
- ``last_materialized(ctx, end)``: where the online store's data ends, so the materialize stage
  loads only the new window (Feast materialize from there to ``end``).
- ``referenced_runs(ctx)``: earlier runs whose artifacts this run uses (kept by retention).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from experiments.allocation import bucket
from features.lake_scan import iter_lake, read_lake
from features.schema import EVENT_SCHEMA
from pipelines.runner import RunContext

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


def read_training_events(lake_dir: Path, window_days: float | None, sample_profiles: int | None, seed: int) -> pa.Table:
    """``sample_events`` of the lake (without ``event_id``), read batch by batch: memory grows with
    the sample and the window, not with the lake (two cheap passes over ``ts`` / ``profile_id``
    find the window's end and its profiles first). Time: linear in the lake's events."""
    if window_days is None and sample_profiles is None:
        return read_lake(lake_dir, TRAINING_COLUMNS)
    ts_type = EVENT_SCHEMA.field("ts").type
    start = None
    if window_days is not None:
        ends = [pc.max(t["ts"]).as_py() for t in iter_lake(lake_dir, ["ts"]) if t.num_rows]
        start = _window_start(max(ends), window_days, ts_type) if ends else None
    keep = None
    if sample_profiles is not None:
        seen = [pc.unique(t["profile_id"].filter(pc.greater_equal(t["ts"], start)) if start is not None else t["profile_id"])
                for t in iter_lake(lake_dir, ["ts", "profile_id"])]
        pids = pc.unique(pa.chunked_array([s.cast(pa.int64()) for s in seen], pa.int64())).to_numpy() if seen else np.zeros(0, np.int64)
        keep = _sampled(pids, sample_profiles, seed) if len(pids) > sample_profiles else None
    parts = []
    for table in iter_lake(lake_dir, TRAINING_COLUMNS):
        if start is not None:
            table = table.filter(pc.greater_equal(table["ts"], start))
        if keep is not None:
            table = table.filter(pc.is_in(table["profile_id"], keep))
        parts.append(table)
    return pa.concat_tables(parts) if parts else pa.schema([EVENT_SCHEMA.field(c) for c in TRAINING_COLUMNS]).empty_table()


def training_events(ctx: RunContext) -> pa.Table:
    """The lake's events as the training stages should see them (cached for the run's training
    stages; the pages stage drops them)."""
    if "training_events" not in ctx.cache:
        cfg = ctx.config.schedule
        ctx.cache["training_events"] = read_training_events(ctx.config.lake_dir, cfg.window_days, cfg.sample_profiles,
                                                            cfg.sample_seed)
    events: pa.Table = ctx.cache["training_events"]
    return events
