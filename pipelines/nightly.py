"""The nightly job: ingest -> features -> materialize -> train -> candidates -> rank -> assemble -> publish.

Each stage is a plain function of the ``RunContext`` (see ``pipelines/runner.py``), so the job
resumes where it failed and re-running a finished run changes nothing. Inputs:

- ``<data_dir>/raw/world/{titles,profiles,events}.parquet``: the catalog, the profiles and the
  event log (the synthetic world, or a loader's output in the same schemas);
- ``<data_dir>/raw/api/**.parquet``: event files dropped for ingest (older servers wrote API events here);
- events landed in the lake by the stream consumer (``features/stream/lake.py``): already validated,
  they count in the fingerprint so that new ones start a new run.

The run id is a fingerprint of those inputs and of the config: the same inputs give the same
run, so a finished run is not redone, and an interrupted one resumes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pathways.config import PathwaysConfig
from pathways.snapshot import current_version
from pipelines import stages
from pipelines.runner import RunContext, Stage, StageResult, peak_rss_gb, run_stages
from pipelines.schedule import reuse_trained

log = logging.getLogger("pathways.nightly")

BESIDE_FEATURES = ("train_als", "train_retrieval", "train_top_row")
STAGES: list[Stage] = [
    Stage("ingest", stages.ingest, "validate raw events into the lake; quarantine bad rows"),
    # One lane in a process of its own, on one core beside the training stages (ALS and retrieval
    # run on one core; none reads the feature store or the lane's models: the lake): the features,
    # Feast's upserts, then the two stages that need them and nothing the training stages make.
    Stage("features", stages.features, "compute point-in-time feature tables", alongside=BESIDE_FEATURES),
    Stage("materialize", stages.materialize, "feast apply + materialize into the online store", alongside=BESIDE_FEATURES),
    Stage("train_ranker", stages.train_ranker, "rankers on impressions with historical features (MLflow)",
          alongside=BESIDE_FEATURES),
    Stage("artwork", stages.artwork, "train, evaluate off-policy and maybe promote the artwork policy",
          alongside=BESIDE_FEATURES),
    Stage("train_als", stages.train_als, "ALS on plays weighted by fraction watched (MLflow)"),
    Stage("train_retrieval", stages.train_retrieval, "two-tower and SASRec retrieval (faiss through FactorSource)"),
    Stage("train_top_row", stages.train_top_row, "learning-to-rank over the union of generators: the top row"),
    Stage("pages", stages.pages, "candidates -> rank -> assemble a page per profile, and fallbacks"),
    Stage("publish", stages.publish, "write the snapshot beside the live one, switch CURRENT last"),
]


def input_files(config: PathwaysConfig) -> list[Path]:
    raw = config.raw_dir
    files = [raw / "world" / name for name in ("titles.parquet", "profiles.parquet", "events.parquet")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"nightly inputs missing: {', '.join(missing)}; generate a world first "
            f"(pathways world generate --out {raw / 'world'})"
        )
    return files + sorted((raw / "api").rglob("*.parquet")) if (raw / "api").is_dir() else files


def fingerprint(config: PathwaysConfig, files: list[Path]) -> str:
    """A short hash of the config and of each input file's name, size and row count.

    Settings that cannot change what a run produces (where data lives, how pages are spread over
    workers, serving) are left out, so that e.g. switching to the Ray executor resumes the run.
    """
    settings = config.model_dump(mode="json", exclude={"data_dir", "pipeline", "serving", "auth", "publish", "schedule"})
    schedule = config.schedule
    if schedule.window_days is not None or schedule.sample_profiles is not None or schedule.sample_above_profiles is not None:
        settings["training_data"] = schedule.model_dump(  # what training reads
            include={"window_days", "sample_profiles", "sample_above_profiles", "stage_sample_profiles", "sample_seed"})
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        try:
            rows = pq.ParquetFile(f).metadata.num_rows
        except Exception:  # noqa: BLE001 - a malformed file: the ingest stage sets it aside
            rows = -1
        h.update(f"{f.name}:{f.stat().st_size}:{rows}".encode())
    for batch in sorted((config.lake_dir / "batches").glob("stream-*.json")):  # landed by the stream consumer
        h.update(batch.name.encode())
    return h.hexdigest()[:12]


class NightlyLocked(RuntimeError):
    """Another nightly run holds this data dir."""


@contextmanager
def nightly_lock(config: PathwaysConfig) -> Iterator[Path]:
    """Hold ``<data_dir>/nightly.lock`` (an exclusive, non-blocking ``flock``) for one run. The
    kernel releases it when the process dies, so a killed run never leaves a stale lock."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.data_dir / "nightly.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process"
            raise NightlyLocked(f"a nightly run already holds {path} (pid {holder}); try again when it ends") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        os.close(fd)


def run_nightly(
    config: PathwaysConfig,
    resume: bool = True,
    until: str | None = None,
    progress: bool = True,
    on_stage: Any = None,
) -> tuple[RunContext, list[StageResult]]:
    """Run (or resume) tonight's job. Returns the context and one result per stage run."""
    with nightly_lock(config):
        files = input_files(config)
        run_id = fingerprint(config, files)
        ctx = RunContext(config=config, run_id=run_id, run_dir=config.runs_dir / run_id, progress=progress)
        ctx.cache["input_files"] = files
        reused = reuse_trained(ctx) if resume else {}
        for stage, source in reused.items():
            log.info("%s: models of run %s are fresh enough (schedule.retrain_every_days)", stage, source)
        started = datetime.now(UTC)
        peaks: dict[str, float] = {}

        def record(result: StageResult) -> None:
            peaks[result.name] = result.peak_rss_gb if result.peak_rss_gb is not None else peak_rss_gb()
            if on_stage is not None:
                on_stage(result)

        stages.configure_mlflow(ctx)  # the tracking DB made (migrated) once, before the lane and this process share it
        results = run_stages(STAGES, ctx, resume=resume, until=until, on_stage=record)
    (ctx.run_dir / "summary.json").write_text(
        json.dumps(
            {
                "run_id": run_id,
                "started": started.isoformat(),
                "finished": datetime.now(UTC).isoformat(),
                "live_snapshot": current_version(config.snapshots_dir),
                "peak_rss_gb": peak_of_run(results, peaks),
                "stages": {r.name: {"seconds": r.seconds, "skipped": r.skipped, "peak_rss_gb": peaks.get(r.name),
                                    "cpu_s": r.cpu_s, **r.outputs} for r in results},
            },
            indent=2,
            default=str,
        )
    )
    return ctx, results


def peak_of_run(results: list[StageResult], peaks: dict[str, float]) -> float:
    """The run's peak resident memory in GiB: the stages' high-water marks, a background stage's
    added to the largest of the stages beside it (an upper bound: their peaks may not coincide)."""
    together = [peaks[r.name] + max((peaks.get(s, 0.0) for s in r.beside), default=0.0)
                for r in results if r.beside and r.name in peaks]
    return max([peak_rss_gb(), *peaks.values(), *together])


def finished_run(config: PathwaysConfig) -> RunContext:
    """The run of the current inputs, with the outputs of the stages it finished (benchmarks, tools)."""
    run_id = fingerprint(config, input_files(config))
    run_dir = config.runs_dir / run_id
    outputs = {p.name.removesuffix(".done.json"): json.loads(p.read_text())["outputs"] for p in run_dir.glob("*.done.json")}
    return RunContext(config, run_id, run_dir, outputs, progress=False)


def format_summary(ctx: RunContext, results: list[StageResult]) -> str:
    lines = [f"nightly run {ctx.run_id} ({ctx.run_dir})", f"{'stage':<14}{'seconds':>9}  result"]
    for r in results:
        shown = {k: v for k, v in r.outputs.items() if not isinstance(v, (dict, list))}
        text = ", ".join(f"{k}={v}" for k, v in shown.items())
        lines.append(f"{r.name:<14}{r.seconds:>9.1f}  {'(done earlier) ' if r.skipped else ''}{text}")
    lines.append(f"total {sum(r.seconds for r in results if not r.skipped):.1f} s; live snapshot: "
                 f"{current_version(ctx.config.snapshots_dir)} in {ctx.config.snapshots_dir}")
    return "\n".join(lines)
