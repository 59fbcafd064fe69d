"""The stage runner: markers, resume, failures, and each stage's time, CPU and memory."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from pathways.config import PathwaysConfig
from pipelines.runner import RunContext, Stage, StageFailed, run_stages


def _ctx(tmp_path) -> RunContext:
    return RunContext(PathwaysConfig(data_dir=tmp_path), "r1", tmp_path / "runs" / "r1", progress=False)


def _busy(ctx: RunContext) -> dict:
    deadline, x = time.perf_counter() + 0.3, np.ones(10_000)
    while time.perf_counter() < deadline:
        x = np.sqrt(x + 1.0)
    return {"busy": True}


def _idle(ctx: RunContext) -> dict:
    time.sleep(0.3)
    return {"idle": ctx.outputs["busy"]["busy"]}


def test_each_stage_records_its_cpu_seconds_and_a_resume_reads_them_back(tmp_path):
    ctx = _ctx(tmp_path)
    results = run_stages([Stage("busy", _busy), Stage("idle", _idle)], ctx)
    busy, idle = results
    assert busy.cpu_s is not None and busy.cpu_s > 0.5 * busy.seconds  # a core was busy
    assert idle.cpu_s is not None and idle.cpu_s < 0.5 * idle.seconds  # asleep, not computing
    assert idle.outputs == {"idle": True} and busy.peak_rss_gb is not None and busy.peak_rss_gb > 0
    assert json.loads((ctx.run_dir / "busy.done.json").read_text())["cpu_s"] == pytest.approx(busy.cpu_s)

    again = run_stages([Stage("busy", _busy), Stage("idle", _idle)], _ctx(tmp_path))
    assert [r.skipped for r in again] == [True, True] and again[1].outputs == {"idle": True}


def test_a_failed_stage_leaves_no_marker_and_names_itself(tmp_path):
    def fail(ctx: RunContext) -> dict:
        raise ValueError("boom")

    ctx = _ctx(tmp_path)
    with pytest.raises(StageFailed, match="stage 'fail' failed: ValueError: boom"):
        run_stages([Stage("busy", _busy), Stage("fail", fail)], ctx)
    assert (ctx.run_dir / "busy.done.json").is_file() and not (ctx.run_dir / "fail.done.json").exists()
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        run_stages([Stage("busy", _busy)], ctx, until="nope")
