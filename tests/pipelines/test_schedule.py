"""Training that fits the window: models reused on a schedule, training data cut to a window and a
stable sample of profiles, materialization from where the last one ended."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from pathways.config import ConfigError, PathwaysConfig
from pipelines.nightly import fingerprint
from pipelines.runner import RunContext
from pipelines.schedule import last_materialized, referenced_runs, reuse_trained, sample_events

DAY = 86_400.0


def _ctx(tmp_path, run_id: str, **overrides) -> RunContext:
    config = PathwaysConfig(data_dir=tmp_path).with_overrides(overrides)
    return RunContext(config, run_id, config.runs_dir / run_id, {}, progress=False)


def _done(ctx: RunContext, stage: str, outputs: dict, at: float) -> None:
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    marker = ctx.run_dir / f"{stage}.done.json"
    marker.write_text(json.dumps({"outputs": outputs, "seconds": 5.0}))
    os.utime(marker, (at, at))


def test_fresh_models_are_reused_and_stale_ones_retrained(tmp_path):
    now = 1_000 * DAY
    old = _ctx(tmp_path, "old")
    _done(old, "train_retrieval", {"dir": "/models/a"}, now - 8 * DAY)
    week = _ctx(tmp_path, "week")
    _done(week, "train_retrieval", {"dir": "/models/b"}, now - 3 * DAY)
    _done(week, "train_top_row", {"path": "/top/b"}, now - 9 * DAY)
    _done(week, "train_als", {"path": "/als/b"}, now - 1 * DAY)
    ctx = _ctx(tmp_path, "new", **{"schedule.retrain_every_days": {"train_retrieval": 7, "train_top_row": 7}})
    assert reuse_trained(ctx, now=now) == {"train_retrieval": "week"}  # top row too old, ALS not scheduled
    marker = json.loads((ctx.run_dir / "train_retrieval.done.json").read_text())
    assert marker["outputs"] == {"dir": "/models/b", "reused_from": "week", "trained_at": now - 3 * DAY}
    assert not (ctx.run_dir / "train_top_row.done.json").exists() and not (ctx.run_dir / "train_als.done.json").exists()
    # A run that reuses a reused result names the run that trained it, and keeps its trained time.
    later = _ctx(tmp_path, "later", **{"schedule.retrain_every_days": {"train_retrieval": 7}})
    assert reuse_trained(later, now=now + 3.5 * DAY) == {"train_retrieval": "week"}
    assert reuse_trained(later, now=now + 3.5 * DAY) == {}  # already recorded: nothing to do
    later.outputs = {"train_retrieval": json.loads((later.run_dir / "train_retrieval.done.json").read_text())["outputs"]}
    assert referenced_runs(later) == {"later", "week"}
    assert reuse_trained(_ctx(tmp_path, "x", **{"schedule.retrain_every_days": {"train_retrieval": 7}}), now=now + 4.5 * DAY) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [({"train_everything": 7}, "unknown training stage"), ({"train_als": -1}, "must be >= 0")],
)
def test_bad_schedules_are_rejected(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        PathwaysConfig(data_dir=tmp_path).with_overrides({"schedule.retrain_every_days": value})


def _events(n_profiles: int, days: int) -> pa.Table:
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    rows = [(p, t0 + timedelta(days=d, hours=p % 24)) for p in range(1, n_profiles + 1) for d in range(days)]
    return pa.table({"profile_id": pa.array([p for p, _ in rows], pa.int64()),
                     "ts": pa.array([t for _, t in rows], pa.timestamp("us", tz="UTC"))})


def test_window_and_sample_cut_the_training_data_stably():
    events = _events(200, 10)
    assert sample_events(events, None, None, 0) is events
    window = sample_events(events, 3.0, None, 0)
    last = max(window.column("ts").to_pylist())
    assert min(window.column("ts").to_pylist()) >= last - timedelta(days=3) and window.num_rows < events.num_rows
    sample = sample_events(events, None, 50, 0)
    kept = set(sample.column("profile_id").to_pylist())
    assert len(kept) == 50 and sample.num_rows == 50 * 10
    grown = pa.concat_tables([events, _events(260, 10).filter(pa.compute.greater(_events(260, 10).column("profile_id"), 200))])
    regrown = set(sample_events(grown, None, 50, 0).column("profile_id").to_pylist())
    assert len(kept & regrown) >= 35  # mostly the same profiles as the population grows
    assert set(sample_events(events, None, 50, 1).column("profile_id").to_pylist()) != kept  # the seed re-draws


def test_training_data_settings_change_the_run_but_the_schedule_alone_does_not(tmp_path):
    base = PathwaysConfig(data_dir=tmp_path)
    assert fingerprint(base, []) == fingerprint(base.with_overrides({"schedule.retrain_every_days": {"train_als": 3}}), [])
    assert fingerprint(base, []) != fingerprint(base.with_overrides({"schedule.sample_profiles": 100}), [])
    assert fingerprint(base, []) != fingerprint(base.with_overrides({"schedule.stage_sample_profiles": {}}), [])


def test_materialization_starts_where_the_last_one_ended(tmp_path):
    end = datetime(2026, 10, 29, tzinfo=UTC)
    ctx = _ctx(tmp_path, "now")
    assert last_materialized(ctx, end) is None  # no online store yet
    ctx.config.feature_repo_dir.mkdir(parents=True)
    (ctx.config.feature_repo_dir / "online.db").write_bytes(b"")
    assert last_materialized(ctx, end) is None  # never materialized
    for run, until in (("a", end - timedelta(days=2)), ("b", end - timedelta(days=1)), ("c", end + timedelta(days=1))):
        _done(_ctx(tmp_path, run), "materialize", {"materialized_until": until.isoformat()}, 0)
    assert last_materialized(ctx, end) == end - timedelta(days=1)


@pytest.mark.parametrize("window_days, sample", [(None, None), (3.0, None), (None, 12), (2.5, 12)])
def test_training_events_read_batch_by_batch_equal_the_sampled_whole_lake(tmp_path, monkeypatch, window_days, sample):
    import features.lake_scan as lake_scan
    from features.ingest import read_events
    from features.lake_index import write_partitioned
    from pipelines.schedule import TRAINING_COLUMNS, read_training_events
    from world.generator import generate_world
    from world.sizes import preset

    events = generate_world(preset("tiny")).events
    half = events.num_rows // 2
    write_partitioned(events.slice(0, half), tmp_path, "a")
    write_partitioned(events.slice(half), tmp_path, "b")
    monkeypatch.setattr(lake_scan, "BATCH_ROWS", 101)
    want = sample_events(read_events(tmp_path), window_days, sample, 0).select(list(TRAINING_COLUMNS))
    got = read_training_events(tmp_path, window_days, sample, 0)
    assert got.num_rows > 0 and got.equals(want)
    if sample is not None:
        assert len(set(got["profile_id"].to_pylist())) == sample


@pytest.mark.parametrize("sample_profiles, above, n_profiles, want", [
    (None, None, 10**6, None), (None, 100, 100, None), (None, 100, 101, 100), (None, 100, None, 100), (7, 100, 5, 7),
])
def test_a_large_world_trains_on_a_sample_by_default(sample_profiles, above, n_profiles, want):
    from pipelines.schedule import sample_size

    schedule = PathwaysConfig().with_overrides(
        {"schedule.sample_profiles": sample_profiles, "schedule.sample_above_profiles": above}).schedule
    assert sample_size(schedule, n_profiles) == want
    assert PathwaysConfig().schedule.sample_above_profiles == 100_000  # 10k-300k worlds: everything; 1M: a sample


def test_the_profiles_left_out_of_the_sample_come_back_range_by_range(tmp_path):
    import pyarrow.compute as pc

    from features.ingest import read_events
    from features.lake_index import write_partitioned
    from pipelines.schedule import FOLD_IN_COLUMNS, UNSAMPLED_DIR, training_events, unsampled_histories
    from training.data import POSITIVE_TYPES
    from world.generator import generate_world
    from world.sizes import preset

    ctx = _ctx(tmp_path, "r", **{"schedule.sample_profiles": 12, "schedule.window_days": 4.0,
                                 "pipeline.history_shard_profiles": 5})
    events = generate_world(preset("tiny")).events
    write_partitioned(events, ctx.config.lake_dir, "a")
    trained = set(training_events(ctx, "train_als")["profile_id"].to_pylist())
    ranges = list(unsampled_histories(ctx, "train_als")())
    assert len(ranges) > 2 and (ctx.run_dir / UNSAMPLED_DIR / "done").is_file()
    bounds = [(min(t["profile_id"].to_pylist()), max(t["profile_id"].to_pylist())) for t in ranges]
    assert all(hi < lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))  # disjoint ranges, in order
    assert all(len(set(t["profile_id"].to_pylist())) <= 5 for t in ranges)
    got = pa.concat_tables(ranges)
    lake = read_events(ctx.config.lake_dir)
    start = pc.max(lake["ts"]).as_py() - timedelta(days=4.0)
    want = lake.filter(pc.and_(pc.and_(pc.is_in(lake["event_type"], pa.array(list(POSITIVE_TYPES))),
                                       pc.greater_equal(lake["ts"], pa.scalar(start, lake["ts"].type))),
                               pc.invert(pc.is_in(lake["profile_id"], pa.array(sorted(trained), pa.int64())))))
    assert got.num_rows == want.num_rows > 0 and not set(got["profile_id"].to_pylist()) & trained
    key = ["profile_id", "ts", "title_id", "event_type"]
    assert got.select(list(FOLD_IN_COLUMNS)).sort_by([(k, "ascending") for k in key]).equals(
        want.select(list(FOLD_IN_COLUMNS)).sort_by([(k, "ascending") for k in key]))
    assert unsampled_histories(_ctx(tmp_path, "all", **{"schedule.sample_above_profiles": None}), "train_als") is None


@pytest.mark.parametrize("sample_profiles, above, caps, n_profiles, want", [
    (None, 100, {"train_retrieval": 20}, 50, {"train_als": None, "train_retrieval": 20, "train_top_row": None}),
    (None, 100, {"train_retrieval": 20}, 500, {"train_als": 100, "train_retrieval": 20, "train_top_row": 100}),
    (None, 100, {"train_retrieval": 200}, 500, {"train_als": 100, "train_retrieval": 100, "train_top_row": 100}),
    (7, None, {"train_retrieval": 20, "train_top_row": 5}, 500, {"train_als": 7, "train_retrieval": 7, "train_top_row": 5}),
])
def test_each_stage_samples_the_smaller_of_its_cap_and_the_general_rule(sample_profiles, above, caps, n_profiles, want):
    from pipelines.schedule import sample_size

    schedule = PathwaysConfig().with_overrides({"schedule.sample_profiles": sample_profiles, "schedule.sample_above_profiles": above,
                                                "schedule.stage_sample_profiles": caps, "schedule.stage_sample_share": 0.0}).schedule
    assert {stage: sample_size(schedule, n_profiles, stage) for stage in want} == want
    assert PathwaysConfig().schedule.stage_sample_profiles == {"train_retrieval": 20_000, "train_top_row": 20_000}


@pytest.mark.parametrize("n_profiles, want", [
    (99_702, {"train_als": None, "train_retrieval": 20_000, "train_top_row": 20_000}),  # the 100k world
    (299_591, {"train_als": 100_000, "train_retrieval": 20_000, "train_top_row": 20_000}),
    (999_155, {"train_als": 100_000, "train_retrieval": 39_967, "train_top_row": 39_967}),  # 4%: more than the cap
    (5_000_000, {"train_als": 100_000, "train_retrieval": 100_000, "train_top_row": 100_000}),  # never past the general rule
    (None, {"train_als": 100_000, "train_retrieval": 20_000, "train_top_row": 20_000}),  # unknown: the cap
])
def test_a_capped_stage_samples_a_share_of_a_large_world(n_profiles, want):
    """The default schedule: the deep stages' cap grows to 4% of the world's profiles (the top row
    learns from more profiles at a million), never past the general rule's sample."""
    from pipelines.schedule import sample_size

    schedule = PathwaysConfig().schedule
    assert {stage: sample_size(schedule, n_profiles, stage) for stage in want} == want


def test_the_stage_sample_share_is_a_share(tmp_path):
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ConfigError):
            PathwaysConfig(data_dir=tmp_path).with_overrides({"schedule.stage_sample_share": bad})


@pytest.mark.parametrize("value", [{"train_sasrec": 10}, {"train_retrieval": 0}, {"train_als": -5}, {"train_als": "many"}])
def test_stage_sample_sizes_reject_unknown_stages_and_bad_sizes(tmp_path, value):
    with pytest.raises(ConfigError):
        PathwaysConfig(data_dir=tmp_path).with_overrides({"schedule.stage_sample_profiles": value})


def test_stage_samples_are_nested_and_every_profile_is_trained_or_folded_in_per_stage(tmp_path, monkeypatch):
    import features.lake_scan as lake_scan
    import pipelines.schedule as schedule
    from features.lake_index import write_partitioned
    from pipelines.schedule import FOLD_IN_STAGES, read_training_events, training_events, unsampled_histories
    from training.data import POSITIVE_TYPES
    from world.generator import generate_world
    from world.sizes import preset

    ctx = _ctx(tmp_path, "r", **{"schedule.sample_above_profiles": 18, "schedule.window_days": 4.0,
                                 "schedule.stage_sample_profiles": {"train_retrieval": 8, "train_top_row": 12},
                                 "pipeline.history_shard_profiles": 5})
    write_partitioned(generate_world(preset("tiny")).events, ctx.config.lake_dir, "a")
    monkeypatch.setattr(lake_scan, "BATCH_ROWS", 97)
    splits = []
    split = schedule.split_by_profile
    monkeypatch.setattr(schedule, "split_by_profile", lambda *a, **k: splits.append(a[1]) or split(*a, **k))
    window = read_training_events(ctx.config.lake_dir, 4.0, None, 0)
    everyone = set(window["profile_id"].to_pylist())
    active = set(window.filter(pc_is_in(window["event_type"], list(POSITIVE_TYPES)))["profile_id"].to_pylist())
    trained = {stage: set(training_events(ctx, stage)["profile_id"].to_pylist()) for stage in FOLD_IN_STAGES}
    assert [len(trained[s]) for s in FOLD_IN_STAGES] == [18, 8, 12] and len(everyone) > 18
    assert trained["train_retrieval"] < trained["train_top_row"] < trained["train_als"] < everyone  # nested
    for stage, size in (("train_retrieval", 8), ("train_top_row", 12)):  # cut in memory = read from the lake
        assert training_events(ctx, stage).equals(read_training_events(ctx.config.lake_dir, 4.0, size, 0))
    for stage in FOLD_IN_STAGES:
        folded = pa.concat_tables(list(unsampled_histories(ctx, stage)()))
        left_out = set(folded["profile_id"].to_pylist())
        assert not left_out & trained[stage]  # only the profiles this stage left out
        assert left_out | trained[stage] >= active  # and every profile with a play is trained or folded in
        assert left_out == active - trained[stage]
    assert len(splits) == 1  # one split pass over the lake for every stage
    assert training_events(ctx, "train_ranker").equals(training_events(ctx, "train_als"))  # the same table, cached


def pc_is_in(column, values):
    import pyarrow.compute as pc

    return pc.is_in(column, pa.array(values))
