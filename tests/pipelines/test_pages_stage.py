"""The pages stage's inputs: one pass over the lake writes the plays and finds the window of every
event (a resume that finds the plays reads the window alone); the profiles' contexts come block by
block from history ranges computed one range ahead, the same whatever the range size."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features.lake_index import write_partitioned
from features.schema import EventType
from pathways.config import PathwaysConfig
from pipelines.runner import RunContext
from pipelines.stages import _write_plays, profile_blocks
from world.generator import generate_world
from world.sizes import preset


def _ctx(tmp_path, **overrides) -> RunContext:
    config = PathwaysConfig(data_dir=tmp_path).with_overrides(overrides)
    return RunContext(config, "r", config.runs_dir / "r", {}, progress=False)


def test_the_plays_are_written_and_the_window_spans_every_event(tmp_path) -> None:
    ctx = _ctx(tmp_path)
    events = generate_world(preset("tiny")).events
    is_play = pc.equal(events["event_type"], EventType.PLAY.value)
    # The lake's first and last events are not plays (a year out): the window must still reach them.
    first, last = pc.min(events["ts"]).as_py(), pc.max(events["ts"]).as_py()
    plays_only = events.filter(is_play)
    early, late = first.replace(year=first.year - 1), last.replace(year=last.year + 1)
    rows = events.filter(pc.invert(is_play)).slice(0, 2).to_pylist()
    for row, ts, eid in zip(rows, (early, late), ("edge-a", "edge-b")):
        row.update(ts=ts, event_id=eid)
    edge = pa.Table.from_pylist(rows, schema=events.schema)
    write_partitioned(pa.concat_tables([events, edge]), ctx.config.lake_dir, "a")
    path = tmp_path / "plays.parquet"
    window = _write_plays(ctx, path)
    assert window == {"window_start": early.isoformat(), "window_end": late.isoformat()}
    written = pq.read_table(path)
    assert set(written["event_type"].to_pylist()) == {EventType.PLAY.value}
    assert sorted(written["event_id"].to_pylist()) == sorted(plays_only["event_id"].to_pylist())
    assert not path.with_suffix(".tmp").exists()
    before = path.stat().st_mtime_ns
    assert _write_plays(ctx, path) == window  # a resume: the window from the ts column, the file kept
    assert path.stat().st_mtime_ns == before


def test_an_empty_lake_is_refused_and_leaves_no_file(tmp_path) -> None:
    ctx = _ctx(tmp_path)
    ctx.config.lake_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "plays.parquet"
    with pytest.raises(ValueError, match="no accepted events"):
        _write_plays(ctx, path)
    assert not path.exists() and not path.with_suffix(".tmp").exists()


def test_contexts_are_the_same_with_ranges_read_ahead_and_closing_stops_the_reader(tmp_path) -> None:
    world = generate_world(preset("tiny"))
    world.write(tmp_path / "raw" / "world")
    write_partitioned(world.events, PathwaysConfig(data_dir=tmp_path).lake_dir, "a")

    def contexts(shard: int) -> list:
        ctx = _ctx(tmp_path, **{"pipeline.history_shard_profiles": shard, "pipeline.chunk_size": 7})
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        total, blocks = profile_blocks(ctx)
        out = [p for block in blocks for p in block]
        assert len(out) == total
        return out

    whole, ranged = contexts(10**6), contexts(5)  # one range; many, each computed while the last is built
    assert ranged == whole and sum(bool(p.history) for p in whole) > 10

    ctx = _ctx(tmp_path, **{"pipeline.history_shard_profiles": 5, "pipeline.chunk_size": 7})
    _, blocks = profile_blocks(ctx)
    assert len(next(blocks)) == 7
    blocks.close()  # a consumer that stops early: the reader thread ends and its shards go
    assert not [t for t in threading.enumerate() if t.name == "history-ranges"]
    assert not list(ctx.run_dir.glob("histories-*"))
