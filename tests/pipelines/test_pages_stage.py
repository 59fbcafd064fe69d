"""The pages stage's plays file and data window: one pass over the lake writes the plays and finds
the window of every event; a resume that finds the plays reads the window alone."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features.lake_index import write_partitioned
from features.schema import EventType
from pathways.config import PathwaysConfig
from pipelines.runner import RunContext
from pipelines.stages import _write_plays
from world.generator import generate_world
from world.sizes import preset


def _ctx(tmp_path) -> RunContext:
    config = PathwaysConfig(data_dir=tmp_path)
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
