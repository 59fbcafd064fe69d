"""A small resumable stage runner: each stage is a plain function of a ``RunContext``.

A run lives in ``runs_dir/<run_id>/``. After a stage succeeds its outputs (a JSON-able dict)
are written atomically to ``<stage>.done.json``; a re-run with the same run id skips stages
that are done and hands their recorded outputs to the stages after them. A stage that fails
leaves no marker, so the next run starts again at that stage. Nothing here publishes: the
publish stage is the only one that touches what serving reads.

A stage with ``alongside`` names runs in a process of its own (spawned) beside those later stages,
which must not read its outputs or in-process objects (the child gets an empty ``cache``); the
child writes its marker when it ends (kept even if the parent dies before it joins); the runner
waits for it before the first stage not named there and hands its outputs on. Consecutive stages
with the same ``alongside`` form one lane: they run one after the other in that one process
(sharing its ``cache``), each with its own marker, so a resumed lane starts at its first stage
without one. This overlaps one-core stages (the features and Feast's materialize beside
single-threaded training).
The child dies with its parent (Linux: ``PR_SET_PDEATHSIG``), so a killed run leaves no writer.

Each stage's own peak resident memory is measured (Linux: the process's high-water mark is reset
before the stage, ``/proc/self/clear_refs``, and read after it, ``VmHWM``); elsewhere it is the
process's peak so far. A background stage's is its own process's; its result names the stages
that ran ``beside`` it, so a summary can add the two.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import resource
import sys
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
    fn: Callable[[RunContext], dict[str, Any]]  # a module-level function (a background stage's is pickled)
    description: str = ""
    alongside: tuple[str, ...] = ()  # later stages it runs beside, in a process of its lane (see the module doc)


@dataclass
class StageResult:
    name: str
    seconds: float
    skipped: bool
    outputs: dict[str, Any]
    peak_rss_gb: float | None = None  # this stage's peak resident memory (None: skipped)
    cpu_s: float | None = None  # CPU seconds of the process's threads during the stage (None: skipped)
    beside: tuple[str, ...] = ()  # a background stage: the stages that ran meanwhile in the parent


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


def _record(ctx: RunContext, name: str, outputs: dict[str, Any], seconds: float, cpu: float) -> None:
    ctx.outputs[name] = outputs
    marker = _marker(ctx, name)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"outputs": outputs, "seconds": seconds, "cpu_s": cpu}, indent=2, default=str))
    os.replace(tmp, marker)


def _die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGKILL when its parent dies (a killed run leaves no writer behind)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before that took effect
        os._exit(1)


def _run_child(lane: list[Stage], ctx: RunContext, parent: int, conn: Any) -> None:
    """A background lane's process: run its stages in order, each writing its marker (kept if the
    parent dies before it joins) and sending ("ok", name, outputs, seconds, cpu, peak); the first
    that fails sends ("error", name, exc) and ends the lane."""
    _die_with_parent(parent)
    try:
        for stage in lane:
            reset_peak_rss()
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            try:
                outputs = stage.fn(ctx) or {}
            except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it as StageFailed
                try:
                    conn.send(("error", stage.name, exc))
                except Exception:  # noqa: BLE001 - an exception that does not pickle
                    conn.send(("error", stage.name, RuntimeError(f"{type(exc).__name__}: {exc}")))
                return
            seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            _record(ctx, stage.name, outputs, seconds, cpu)
            ctx.outputs[stage.name] = outputs  # the lane's later stages read it
            conn.send(("ok", stage.name, outputs, seconds, cpu, peak_rss_gb()))
    finally:
        conn.close()


class _Background:
    """A lane of stages running, one after the other, in a spawned process of its own."""

    def __init__(self, lane: list[Stage], ctx: RunContext) -> None:
        spawn = multiprocessing.get_context("spawn")  # not fork: the parent has threads (DuckDB, torch, Ray)
        self.lane = lane
        self.alongside = lane[0].alongside
        self.beside: list[str] = []
        self._recv, send = spawn.Pipe(duplex=False)
        child_ctx = dataclasses.replace(ctx, cache={}, progress=False)
        self._proc = spawn.Process(target=_run_child, args=(lane, child_ctx, os.getpid(), send),
                                   name=f"pathways-stage-{lane[0].name}", daemon=True)
        self._proc.start()
        send.close()

    def finish(self, ctx: RunContext, done: Callable[[StageResult], None]) -> None:
        """Wait for the process; hand each stage's result to ``done`` (outputs into ``ctx``) as it
        comes, or raise ``StageFailed`` for the stage that failed (or the lane's process that died)."""
        try:
            for stage in self.lane:
                try:
                    message = self._recv.recv()
                except EOFError:
                    message = ("error", stage.name, RuntimeError("its process ended without a result"))
                if message[0] != "ok":
                    self._proc.join()  # its exit code says how it ended
                    cause = message[2]
                    if self._proc.exitcode:
                        cause = RuntimeError(f"{cause} (exit code {self._proc.exitcode})")
                    raise StageFailed(message[1], cause)
                _, name, outputs, seconds, cpu, peak = message
                ctx.outputs[name] = outputs  # the child wrote the marker
                done(StageResult(name, seconds, False, outputs, peak, cpu, tuple(self.beside)))
        finally:
            self._recv.close()
            self._proc.join()

    def kill(self) -> None:
        self._proc.kill()
        self._proc.join()
        self._recv.close()


def _lanes(stages: list[Stage]) -> dict[str, list[Stage]]:
    """The background lanes, by their first stage's name: runs of consecutive stages with the same
    ``alongside``, which must name the stages right after the lane (ValueError otherwise)."""
    names = [s.name for s in stages]
    lanes: dict[str, list[Stage]] = {}
    end = 0
    for alongside, group in itertools.groupby(stages, key=lambda s: s.alongside):
        lane = list(group)
        end += len(lane)
        if alongside:
            if list(alongside) != names[end:end + len(alongside)]:
                raise ValueError(f"stage {lane[0].name!r} runs beside {list(alongside)}: they must be the "
                                 "stages right after it (or after its lane)")
            lanes[lane[0].name] = lane
    return lanes


def run_stages(
    stages: list[Stage],
    ctx: RunContext,
    resume: bool = True,
    until: str | None = None,
    on_stage: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Run ``stages`` in order (skipping those already done when ``resume``); stop after ``until``.
    Results come back in the stages' order; ``on_stage`` hears of each as it finishes."""
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise ValueError(f"unknown stage {until!r}; stages are {names}")
    lanes = _lanes(stages)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    ctx.resume = resume
    results: list[StageResult] = []
    background: list[_Background] = []

    def done(result: StageResult) -> None:
        results.append(result)
        if on_stage:
            on_stage(result)

    def join(keep: Callable[[_Background], bool]) -> None:
        for bg in [b for b in background if not keep(b)]:
            background.remove(bg)
            bg.finish(ctx, done)

    def recorded(stage: Stage) -> bool:
        marker = _marker(ctx, stage.name)
        if not (resume and marker.is_file()):
            return False
        outputs = json.loads(marker.read_text())
        ctx.outputs[stage.name] = outputs["outputs"]
        done(StageResult(stage.name, outputs["seconds"], True, outputs["outputs"]))
        return True

    try:
        i = 0
        while i < len(stages):
            stage = stages[i]
            join(lambda bg: stage.name in bg.alongside)  # noqa: B023 - called at once
            lane = lanes.get(stage.name, [])
            if lane and until not in [s.name for s in lane]:
                todo = [s for s in lane if not recorded(s)]
                if todo:
                    log.info("stages %s (in a process of their own, beside %s)", ", ".join(s.name for s in todo),
                             ", ".join(stage.alongside))
                    background.append(_Background(todo, ctx))
                i += len(lane)
                continue
            i += 1
            if not recorded(stage):
                log.info("stage %s: %s", stage.name, stage.description)
                reset_peak_rss()
                t0, cpu0 = time.perf_counter(), cpu_seconds()
                try:
                    outputs = stage.fn(ctx) or {}
                except Exception as exc:  # noqa: BLE001 - re-raised with the stage name
                    raise StageFailed(stage.name, exc) from exc
                seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
                _record(ctx, stage.name, outputs, seconds, cpu)
                for bg in background:
                    bg.beside.append(stage.name)
                done(StageResult(stage.name, seconds, False, outputs, peak_rss_gb(), cpu))
            if stage.name == until:
                break
        join(lambda bg: False)
    except Exception:
        # A failed stage: the background ones finish (and keep their markers, so a resume skips them).
        for bg in background:
            try:
                bg.finish(ctx, done)
            except StageFailed as exc:
                log.error("%s", exc)
        raise
    except BaseException:  # interrupted: stop the background processes too
        for bg in background:
            bg.kill()
        raise
    order = {name: i for i, name in enumerate(names)}
    return sorted(results, key=lambda r: order[r.name])
