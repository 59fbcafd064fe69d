"""A small resumable stage runner: each stage is a plain function of a ``RunContext``.

A run lives in ``runs_dir/<run_id>/``. After a stage succeeds its outputs (a JSON-able dict)
are written atomically to ``<stage>.done.json``; a re-run with the same run id skips stages
that are done and hands their recorded outputs to the stages after them. A stage that fails
leaves no marker, so the next run starts again at that stage. Nothing here publishes: the
publish stage is the only one that touches what serving reads.

Each stage's own peak resident memory is measured (Linux: the process's high-water mark is reset
before the stage, ``/proc/self/clear_refs``, and read after it, ``VmHWM``); elsewhere it is the
process's peak so far.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathways.config import PathwaysConfig

log = logging.getLogger("pathways.pipeline")


@dataclass
class RunContext:
    """What every stage sees: config, the run's folder, and earlier stages' outputs."""

    config: PathwaysConfig
    run_id: str
    run_dir: Path
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = True
    cache: dict[str, Any] = field(default_factory=dict)  # in-process objects shared by stages
    resume: bool = True  # False: stages redo their work from scratch (no partial results kept)

    def stage_dir(self, stage: str) -> Path:
        path = self.run_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[RunContext], dict[str, Any]]
    description: str = ""


@dataclass
class StageResult:
    name: str
    seconds: float
    skipped: bool
    outputs: dict[str, Any]
    peak_rss_gb: float | None = None  # this stage's peak resident memory (None: skipped)
    cpu_s: float | None = None  # CPU seconds of the process's threads during the stage (None: skipped)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak_rss() -> None:
    """Reset this process's resident-memory high-water mark (Linux; elsewhere nothing happens)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_gb() -> float:
    """This process's resident-memory high-water mark in GiB (since the last ``reset_peak_rss``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


class StageFailed(RuntimeError):
    def __init__(self, stage: str, cause: BaseException):
        super().__init__(f"stage {stage!r} failed: {type(cause).__name__}: {cause}")
        self.stage = stage


def _marker(ctx: RunContext, stage: str) -> Path:
    return ctx.run_dir / f"{stage}.done.json"


def run_stages(
    stages: list[Stage],
    ctx: RunContext,
    resume: bool = True,
    until: str | None = None,
    on_stage: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Run ``stages`` in order (skipping those already done when ``resume``); stop after ``until``."""
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise ValueError(f"unknown stage {until!r}; stages are {names}")
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    ctx.resume = resume
    results: list[StageResult] = []
    for stage in stages:
        marker = _marker(ctx, stage.name)
        if resume and marker.is_file():
            recorded = json.loads(marker.read_text())
            ctx.outputs[stage.name] = recorded["outputs"]
            result = StageResult(stage.name, recorded["seconds"], True, recorded["outputs"])
        else:
            log.info("stage %s: %s", stage.name, stage.description)
            reset_peak_rss()
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            try:
                outputs = stage.fn(ctx) or {}
            except Exception as exc:  # noqa: BLE001 - re-raised with the stage name
                raise StageFailed(stage.name, exc) from exc
            seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            ctx.outputs[stage.name] = outputs
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(json.dumps({"outputs": outputs, "seconds": seconds, "cpu_s": cpu}, indent=2, default=str))
            os.replace(tmp, marker)
            result = StageResult(stage.name, seconds, False, outputs, peak_rss_gb(), cpu)
        results.append(result)
        if on_stage:
            on_stage(result)
        if stage.name == until:
            break
    return results
