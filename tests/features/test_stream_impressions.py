"""The impressions stream: one entry per served page, its own stream (segment log and Redis), and
its lake consumer expanding pages into ``artwork_impression`` rows exactly once, across crashes."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from features.ingest import read_events
from features.lake_index import EventIdIndex
from features.schema import EVENT_SCHEMA
from features.stream import open_stream
from features.stream.__main__ import main
from features.stream.base import EventStream, decode_event, encode_event
from features.stream.impressions import impressions_table, page_entry
from features.stream.lake import LakeConsumer, landed_totals, run_consumers
from features.stream.segment_log import SegmentLog
from pathways.config import PathwaysConfig
from tests.conftest import make_titles
from tests.features.builders import T0, event, make_profiles
from tests.features.test_stream_consumers import CRASH_POINTS, Crash, crash_at, stream_events
from tests.redis_server import needs_redis, start_redis, stop_redis

TITLES = np.array([101, 102, 103, 104, 106, 108])  # licensed everywhere, not mature (tests/conftest.make_titles)


def page(n: int, profile_id: int = 1) -> dict:
    """Page ``n``: two rows of three titles, artwork 0..2, propensity 0.25, over two days of ``ts``."""
    return page_entry(f"req-{n}", profile_id, "pol-1", T0 + timedelta(hours=20 + n * 0.5), TITLES,
                      np.repeat([0, 1], 3), np.tile(np.arange(3), 2), np.tile(np.arange(3), 2), np.full(6, 0.25))


def pages(n: int, bad_every: int = 0) -> list[dict]:
    """n pages; every ``bad_every``-th for an unknown profile (its impressions are quarantined)."""
    return [page(i, 99 if bad_every and i % bad_every == 0 else 1 + i % 3) for i in range(n)]


def consumer(stream: EventStream, lake: Path, flush_events: int = 40, flush_interval_s: float = 60.0) -> LakeConsumer:
    return LakeConsumer(stream, lake, make_titles(), make_profiles(), flush_events=flush_events,
                        flush_interval_s=flush_interval_s, stream_name="impressions")


def drain(c: LakeConsumer) -> list:
    """Recover, then poll and flush until the stream is empty; the reports."""
    reports = [c.recover()]
    while (report := c.poll(block_s=0.0)) is not None or c.buffer:
        reports.append(report if report is not None else c.flush())
    return [r for r in reports if r is not None]


def test_a_page_entry_survives_the_codec_and_expands_to_one_row_per_title() -> None:
    entry = page(3)
    decoded = decode_event(encode_event(entry))
    assert decoded["title_id"] == TITLES.tolist() and decoded["event_id"] == "req-3"
    table = impressions_table([decoded])
    assert table.schema.names == EVENT_SCHEMA.names
    assert table.equals(impressions_table([entry]))  # numpy arrays or decoded lists: the same rows
    rows = table.to_pylist()
    assert [(r["title_id"], r["row_index"], r["position"], r["artwork_id"]) for r in rows] == [
        (101, 0, 0, 0), (102, 0, 1, 1), (103, 0, 2, 2), (104, 1, 0, 0), (106, 1, 1, 1), (108, 1, 2, 2)]
    assert {r["event_id"] for r in rows} == {f"req-3:{t}" for t in TITLES}
    assert {(r["event_type"], r["session_id"], r["profile_id"], r["propensity"], r["policy_version"]) for r in rows} == {
        ("artwork_impression", "req-3", 1, 0.25, "pol-1")}
    assert {r["ts"] for r in rows} == {T0 + timedelta(hours=21.5)} and rows[0]["device"] is None


def test_n_pages_land_as_exactly_their_impressions_once(tmp_path: Path) -> None:
    stream = SegmentLog(tmp_path / "log")
    assert len(stream.append(pages(20, bad_every=7))) == 20  # one entry per page
    reports = drain(consumer(stream, tmp_path / "lake"))
    assert all(r.rows_in <= 40 + 6 for r in reports) and len(reports) >= 3  # flush_events counts rows
    totals = landed_totals(tmp_path / "lake")
    assert totals == {"rows_in": 120, "accepted": 120 - 18, "quarantined": 18, "batches": len(reports)}
    ids = read_events(tmp_path / "lake")["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 102
    assert all(p.name.startswith("stream-impressions-lake-") for p in (tmp_path / "lake" / "batches").iterdir())
    assert stream.lag("lake") == 0


@pytest.mark.parametrize("where", CRASH_POINTS)
def test_a_crashed_impressions_consumer_resumes_without_loss_or_double_landing(tmp_path: Path, monkeypatch,
                                                                              where: str) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append(pages(20, bad_every=7))
    first = consumer(stream, tmp_path / "lake")
    while first.poll(block_s=0.0) is None:  # the first batch landed and committed
        pass
    crash_at(where, first, stream, monkeypatch)
    with pytest.raises(Crash):
        while True:
            first.poll(block_s=0.0)
    monkeypatch.undo()
    assert first.intent_path.exists() == (where != "before_intent")

    restarted = SegmentLog(tmp_path / "log")
    drain(consumer(restarted, tmp_path / "lake"))
    totals = landed_totals(tmp_path / "lake")
    assert (totals["rows_in"], totals["accepted"], totals["quarantined"]) == (120, 102, 18)  # counts exact
    ids = read_events(tmp_path / "lake")["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 102  # none lost, none twice
    reports = [json.loads(p.read_text()) for p in (tmp_path / "lake" / "batches").glob("stream-*.json")]
    assert all(set(r["by_reason"]) <= {"unknown_profile_id"} for r in reports)  # no duplicate_in_lake
    assert restarted.lag("lake") == 0 and not first.intent_path.exists()


def test_a_replayed_page_counts_once(tmp_path: Path) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append(pages(3))
    assert [a.duplicate for a in stream.append([page(1)])] == [True]  # a retried append: the stream knows the id
    forgetful = SegmentLog(tmp_path / "log2", dedupe_window_events=0)
    forgetful.append(pages(3))
    c = consumer(forgetful, tmp_path / "lake")
    drain(c)
    forgetful.append([page(1)])  # the stream forgot it: the lake still knows its impressions' ids
    drain(c)
    totals = landed_totals(tmp_path / "lake")
    assert (totals["rows_in"], totals["accepted"], totals["quarantined"]) == (24, 18, 6)
    assert read_events(tmp_path / "lake").num_rows == 18


def test_events_and_impressions_streams_are_apart_and_land_in_one_lake(tmp_path: Path, capsys) -> None:
    config = PathwaysConfig(data_dir=tmp_path / "data")
    events, impressions = open_stream(config), open_stream(config, "impressions")
    backfilled = {**event(99, "artwork_impression", 1, 101, hours=20, artwork_id=0, propensity=0.5, row_index=0,
                          position=0, policy_version="pol-1"), "event_id": "req-0:101"}  # an admin backfill
    events.append(stream_events(30) + [backfilled])
    impressions.append(pages(10))
    assert events.lag("realtime") == 31 and impressions.lag("lake") == 10  # positions of both start at 0
    assert (tmp_path / "data" / "stream" / "impressions" / "segments").is_dir()
    assert [p.name for p in (tmp_path / "data" / "stream" / "impressions" / "groups").iterdir()] == ["lake.commits"]
    assert main(["lag", "--set", f"data_dir={tmp_path / 'data'}"]) == 0
    assert json.loads(capsys.readouterr().out) == {"lake": 31, "realtime": 31, "impressions/lake": 10}
    lake, index = config.lake_dir, EventIdIndex(config.lake_dir)  # one index: each sees the other's ids
    both = [LakeConsumer(events, lake, make_titles(), make_profiles(), flush_interval_s=0.0, index=index),
            LakeConsumer(impressions, lake, make_titles(), make_profiles(), flush_interval_s=0.0, index=index,
                         stream_name="impressions")]
    stop = threading.Event()
    runner = threading.Thread(target=run_consumers, args=(both, stop, 0.05))
    runner.start()
    deadline = time.monotonic() + 20.0
    while (events.lag("lake") or impressions.lag("lake")) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    runner.join(timeout=10.0)
    table = read_events(lake)
    assert table.num_rows == 31 + 60 - 1 and len(set(table["event_id"].to_pylist())) == 90
    assert table["event_type"].to_pylist().count("artwork_impression") == 60
    assert landed_totals(lake) == {"rows_in": 91, "accepted": 90, "quarantined": 1, "batches": 2}  # req-0:101 once
    batches = sorted(p.name for p in (lake / "batches").iterdir())
    assert {b.split("-")[1] for b in batches} == {"lake", "impressions"}  # stream-lake-0, stream-impressions-lake-0
    assert events.lag("realtime") == 31  # the real-time group reads only events


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(proc)


@needs_redis
def test_on_redis_impressions_have_their_own_key_and_land_once(tmp_path: Path, redis_url: str) -> None:
    import redis

    key = f"test:{tmp_path.name}"
    config = PathwaysConfig(data_dir=tmp_path / "data").with_overrides(
        {"stream.backend": "redis", "stream.redis_url": redis_url, "stream.redis_key": key})
    events, impressions = open_stream(config), open_stream(config, "impressions")
    assert [a.duplicate for a in impressions.append(pages(8, bad_every=5) + [page(3)])] == [False] * 8 + [True]
    client = redis.Redis.from_url(redis_url)
    assert client.xlen(f"{key}:impressions") == 8 and client.xlen(key) == 0
    assert events.read("realtime", "r1", 100) == []
    drain(consumer(impressions, config.lake_dir))
    totals = landed_totals(config.lake_dir)
    assert (totals["rows_in"], totals["accepted"], totals["quarantined"]) == (48, 36, 12)
    ids = read_events(config.lake_dir)["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 36
    assert impressions.lag("lake") == 0
