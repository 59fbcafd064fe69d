"""The stage runner: markers, resume, failures, and each stage's time, CPU and memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pathways.config import PathwaysConfig
from pipelines.runner import RunContext, Stage, StageFailed, run_stages

ROOT = Path(__file__).resolve().parents[2]


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


# Background stages: module-level functions (a spawned process imports them by name). The stages
# meet through flag files, so the test fails (by timeout) unless they really run at the same time.
def _wait_for(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never appeared: the stages did not run at the same time")
        time.sleep(0.02)


def _bg(ctx: RunContext) -> dict:
    (ctx.run_dir / "bg.started").touch()
    _wait_for(ctx.run_dir / "b.started")  # b runs meanwhile in the parent
    if ctx.cache:
        raise AssertionError("a background stage must not see the parent's in-process objects")
    return {"pid": os.getpid()}


def _b(ctx: RunContext) -> dict:
    (ctx.run_dir / "b.started").touch()
    _wait_for(ctx.run_dir / "bg.started")
    return {"pid": os.getpid()}


def _c(ctx: RunContext) -> dict:
    return {"saw_bg": "bg" in ctx.outputs}


def _d(ctx: RunContext) -> dict:
    return {"bg_pid": ctx.outputs["bg"]["pid"]}


def _bg_fails(ctx: RunContext) -> dict:
    raise ValueError("no online store today")


def _b_fails(ctx: RunContext) -> dict:
    (ctx.run_dir / "b.started").touch()
    _wait_for(ctx.run_dir / "bg.started")
    raise ValueError("training broke")


def _bg_sleeps(ctx: RunContext) -> dict:
    (ctx.run_dir / "bg.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return {}


def test_a_background_stage_runs_beside_the_next_ones_in_its_own_process(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.cache["big"] = object()  # not picklable as such, and never sent
    stages = [Stage("bg", _bg, alongside=("b", "c")), Stage("b", _b), Stage("c", _c), Stage("d", _d)]
    results = run_stages(stages, ctx)
    assert [r.name for r in results] == ["bg", "b", "c", "d"]  # the stages' order, whenever each ended
    bg, b, c, d = results
    assert bg.outputs["pid"] != os.getpid() == b.outputs["pid"]
    assert bg.beside == ("b", "c") and b.beside == ()
    assert c.outputs == {"saw_bg": False}  # c ran beside bg: its outputs came later
    assert d.outputs == {"bg_pid": bg.outputs["pid"]}  # d came after the join
    assert bg.cpu_s is not None and bg.peak_rss_gb is not None and bg.peak_rss_gb > 0
    assert json.loads((ctx.run_dir / "bg.done.json").read_text())["outputs"] == bg.outputs
    again = run_stages(stages, _ctx(tmp_path))
    assert all(r.skipped for r in again) and again[3].outputs == d.outputs


def test_background_failures_name_the_stage_and_keep_what_finished(tmp_path):
    ctx = _ctx(tmp_path)
    with pytest.raises(StageFailed, match="stage 'bg' failed: ValueError: no online store today"):
        run_stages([Stage("bg", _bg_fails, alongside=("c",)), Stage("c", _c), Stage("d", _d)], ctx)
    assert (ctx.run_dir / "c.done.json").is_file() and not (ctx.run_dir / "bg.done.json").exists()

    # A stage failing beside a background one: the background one still finishes and is kept.
    ctx = _ctx(tmp_path / "second")
    with pytest.raises(StageFailed, match="stage 'b' failed: ValueError: training broke"):
        run_stages([Stage("bg", _bg, alongside=("b",)), Stage("b", _b_fails), Stage("d", _d)], ctx)
    assert not (ctx.run_dir / "b.done.json").exists()
    assert json.loads((ctx.run_dir / "bg.done.json").read_text())["outputs"]["pid"] != os.getpid()


def test_alongside_must_name_the_stages_right_after(tmp_path):
    with pytest.raises(ValueError, match="must be the stages right after it"):
        run_stages([Stage("bg", _bg, alongside=("c",)), Stage("b", _b), Stage("c", _c)], _ctx(tmp_path))
    with pytest.raises(ValueError, match="after its lane"):  # a lane: the stages after its last one
        run_stages([Stage("l1", _bg, alongside=("c",)), Stage("l2", _bg, alongside=("c",)), Stage("b", _b), Stage("c", _c)],
                   _ctx(tmp_path))


def _lane_first(ctx: RunContext) -> dict:
    (ctx.run_dir / "bg.started").touch()
    ctx.cache["first"] = os.getpid()  # the lane's next stage shares this process's objects
    return {"pid": os.getpid()}


def _lane_second(ctx: RunContext) -> dict:
    _wait_for(ctx.run_dir / "b.started")  # b runs meanwhile in the parent
    return {"pid": os.getpid(), "first": ctx.outputs["lane1"]["pid"], "cached": ctx.cache.get("first")}


def _lane_second_fails(ctx: RunContext) -> dict:
    raise ValueError("materialize broke")


def _after_lane(ctx: RunContext) -> dict:
    return {"second": ctx.outputs["lane2"]["pid"]}


def test_consecutive_stages_beside_the_same_ones_run_in_turn_in_one_background_process(tmp_path):
    ctx = _ctx(tmp_path)
    stages = [Stage("lane1", _lane_first, alongside=("b", "c")), Stage("lane2", _lane_second, alongside=("b", "c")),
              Stage("b", _b), Stage("c", _c), Stage("d", _after_lane)]
    results = run_stages(stages, ctx)
    assert [r.name for r in results] == ["lane1", "lane2", "b", "c", "d"]
    lane1, lane2, b, c, d = results
    assert lane1.outputs["pid"] == lane2.outputs["pid"] != os.getpid() == b.outputs["pid"]
    assert lane2.outputs["first"] == lane2.outputs["cached"] == lane1.outputs["pid"]  # in turn, one process
    assert lane1.beside == lane2.beside == ("b", "c") and d.outputs == {"second": lane2.outputs["pid"]}
    assert all((ctx.run_dir / f"{n}.done.json").is_file() for n in ("lane1", "lane2"))
    assert lane1.peak_rss_gb is not None and lane2.cpu_s is not None


def test_a_lane_that_fails_midway_keeps_its_finished_stages_and_resumes_at_the_failed_one(tmp_path):
    stages = [Stage("lane1", _quick, alongside=("c",)), Stage("lane2", _lane_second_fails, alongside=("c",)),
              Stage("c", _c), Stage("d", _quick)]
    ctx = _ctx(tmp_path)
    with pytest.raises(StageFailed, match="stage 'lane2' failed: ValueError: materialize broke"):
        run_stages(stages, ctx)
    first = json.loads((ctx.run_dir / "lane1.done.json").read_text())["outputs"]
    assert first["pid"] != os.getpid() and not (ctx.run_dir / "lane2.done.json").exists()
    assert (ctx.run_dir / "c.done.json").is_file()  # the stage beside it finished

    stages[1] = Stage("lane2", _quick, alongside=("c",))  # fixed
    again = run_stages(stages, _ctx(tmp_path))
    assert [r.skipped for r in again] == [True, False, True, False]  # d: it never ran
    assert again[0].outputs == first and again[1].outputs["pid"] not in (os.getpid(), first["pid"])


def test_a_run_until_a_stage_of_a_lane_runs_the_lane_in_the_foreground(tmp_path):
    stages = [Stage("lane1", _quick, alongside=("c",)), Stage("lane2", _quick, alongside=("c",)), Stage("c", _c)]
    results = run_stages(stages, _ctx(tmp_path), until="lane2")
    assert [r.name for r in results] == ["lane1", "lane2"]
    assert all(r.outputs["pid"] == os.getpid() and r.beside == () for r in results)


def _quick(ctx: RunContext) -> dict:
    return {"pid": os.getpid()}


def _sleeps(ctx: RunContext) -> dict:
    time.sleep(120)
    return {}


def _start_run(tmp_path: Path, stages: str) -> subprocess.Popen:
    """A run of ``stages`` (Python source of the list) in a process of its own, to be killed."""
    script = (
        "import sys; sys.path.insert(0, {!r})\n"
        "from pathlib import Path\n"
        "from pathways.config import PathwaysConfig\n"
        "from pipelines.runner import RunContext, Stage, run_stages\n"
        "from tests.pipelines.test_runner import _bg_sleeps, _c, _quick, _sleeps\n"
        "if __name__ == '__main__':\n"
        "    ctx = RunContext(PathwaysConfig(data_dir=Path({!r})), 'r1', Path({!r}), progress=False)\n"
        "    run_stages({}, ctx)\n"
    ).format(str(ROOT), str(tmp_path), str(tmp_path / "run"), stages)
    return subprocess.Popen([sys.executable, "-c", script])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has ended (its parent is gone, nobody reaped it yet)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG exists only on Linux (CI runs Linux): elsewhere nothing ties the child to its parent; a platform equivalent in _die_with_parent would lift this")
def test_a_killed_run_takes_its_background_process_with_it(tmp_path):
    parent = _start_run(tmp_path, "[Stage('bg', _bg_sleeps, alongside=('c',)), Stage('c', _c)]")
    try:
        _wait_for(tmp_path / "run" / "bg.pid")
        child = int((tmp_path / "run" / "bg.pid").read_text())
        os.kill(child, 0)  # running
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _alive(child):
            return
        time.sleep(0.05)
    os.kill(child, 9)
    raise AssertionError("the background stage's process outlived its killed parent")


def test_a_background_stage_that_ended_keeps_its_marker_when_the_run_is_killed_before_the_join(tmp_path):
    parent = _start_run(tmp_path, "[Stage('bg', _quick, alongside=('s',)), Stage('s', _sleeps), Stage('c', _c)]")
    try:
        _wait_for(tmp_path / "run" / "bg.done.json")  # written while the parent still sleeps in 's'
    finally:
        parent.kill()
        parent.wait()
    recorded = json.loads((tmp_path / "run" / "bg.done.json").read_text())
    assert recorded["outputs"]["pid"] != parent.pid and not (tmp_path / "run" / "s.done.json").exists()
    again = run_stages([Stage("bg", _quick, alongside=("s",)), Stage("s", _quick), Stage("c", _c)],
                       RunContext(PathwaysConfig(data_dir=tmp_path), "r1", tmp_path / "run", progress=False))
    assert [r.skipped for r in again] == [True, False, False] and again[0].outputs == recorded["outputs"]


def test_the_run_peak_adds_a_background_stage_to_the_largest_stage_beside_it():
    from pipelines.nightly import peak_of_run
    from pipelines.runner import StageResult

    results = [StageResult("bg", 1.0, False, {}, 3.0, 1.0, ("b", "c")), StageResult("b", 1.0, False, {}, 5.0),
               StageResult("c", 1.0, False, {}, 6.0), StageResult("d", 1.0, False, {}, 8.5)]
    peaks = {r.name: r.peak_rss_gb for r in results if r.peak_rss_gb is not None}
    assert peak_of_run(results, peaks) == 9.0  # bg's 3 + c's 6, above d's 8.5
    assert peak_of_run(results[1:], {k: v for k, v in peaks.items() if k != "bg"}) == 8.5
