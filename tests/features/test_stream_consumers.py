"""The lake and real-time consumer groups: exactly-once accounting by id across crashes, lag,
one file per day partition and flush, and the real-time state applied in order."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features.ingest import land, read_events
from features.lake_index import write_partitioned
from features.stream.lake import LakeConsumer, landed_totals
from features.stream.realtime import RealtimeConsumer, RecentPlays
from features.stream.segment_log import SegmentLog
from tests.conftest import make_titles
from tests.features.builders import T0, event, make_profiles


class Crash(Exception):
    """A consumer killed at some point of a flush."""


def stream_events(n: int, start: int = 0, bad_every: int = 0) -> list[dict]:
    """n events over two days; every ``bad_every``-th has an unknown profile."""
    rows = []
    for i in range(start, start + n):
        pid = 99 if bad_every and i % bad_every == 0 else 1 + i % 5
        rows.append(event(i, "play", pid, 100 + i % 7, hours=20 + i * 0.05, fraction_watched=0.5))
    return rows


def make_consumer(stream: SegmentLog, lake: Path, **kw) -> LakeConsumer:
    return LakeConsumer(stream, lake, make_titles(), make_profiles(), flush_events=kw.pop("flush_events", 40),
                        flush_interval_s=kw.pop("flush_interval_s", 60.0), **kw)


def drain(consumer: LakeConsumer) -> None:
    consumer.recover()
    while consumer.poll(block_s=0.0) is not None or consumer.buffer:
        if consumer.buffer and consumer.poll(block_s=0.0) is None:
            consumer.flush()


def lake_ids(lake: Path) -> list[str]:
    return read_events(lake)["event_id"].to_pylist()


def test_flushes_land_each_event_once_split_by_day(tmp_path: Path) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append(stream_events(100, bad_every=10))
    consumer = make_consumer(stream, tmp_path / "lake")
    drain(consumer)
    totals = landed_totals(tmp_path / "lake")
    assert totals == {"rows_in": 100, "accepted": 90, "quarantined": 10, "batches": 3}
    ids = lake_ids(tmp_path / "lake")
    assert len(ids) == len(set(ids)) == 90
    days = sorted(p.name for p in (tmp_path / "lake" / "events").iterdir())
    assert days == ["date=2026-10-01", "date=2026-10-02"]
    files = list((tmp_path / "lake" / "events").rglob("*.parquet"))
    assert len(files) <= 3 * 2  # one file per day partition and flush
    quarantined = pq.read_table(next((tmp_path / "lake" / "quarantine").glob("*.parquet")))
    assert set(quarantined["reason"].to_pylist()) == {"unknown_profile_id"}
    assert stream.lag("lake") == 0


CRASH_POINTS = ["before_intent", "before_write", "mid_write", "after_write", "before_commit", "after_commit"]


def crash_at(where: str, consumer: LakeConsumer, stream: SegmentLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the consumer's next flush die at ``where`` (the files it wrote so far stay behind)."""
    def crash(*args: object, **kwargs: object) -> None:
        raise Crash()

    if where == "before_intent":
        monkeypatch.setattr(consumer, "_write_intent", crash)
    elif where == "before_write":  # intent written, nothing landed
        monkeypatch.setattr("features.stream.lake.land", crash)
    elif where == "mid_write":  # one day partition written, then killed
        def write_one_day_then_crash(table, lake_dir, batch_id):
            write_partitioned(table.slice(0, 1), lake_dir, batch_id)
            raise Crash()

        monkeypatch.setattr("features.ingest.write_partitioned", write_one_day_then_crash)
    elif where == "after_write":  # files and report written, intent not yet marked landed
        def land_then_crash(*args, **kwargs):
            land(*args, **kwargs)
            raise Crash()

        monkeypatch.setattr("features.stream.lake.land", land_then_crash)
    elif where == "before_commit":  # intent marked landed, the commit never made
        monkeypatch.setattr(stream, "commit", crash)
    else:  # after_commit: committed in the stream, killed before the intent is removed
        real_unlink = Path.unlink

        def unlink_or_crash(self: Path, *args, **kwargs):
            if self.name == "intent.json":
                raise Crash()
            return real_unlink(self, *args, **kwargs)

        monkeypatch.setattr(Path, "unlink", unlink_or_crash)


@pytest.mark.parametrize("where", CRASH_POINTS)
def test_a_crashed_consumer_resumes_without_loss_or_double_landing(tmp_path: Path, monkeypatch, where: str) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append(stream_events(120, bad_every=7))
    consumer = make_consumer(stream, tmp_path / "lake")
    consumer.poll(block_s=0.0)  # first batch landed and committed
    crash_at(where, consumer, stream, monkeypatch)
    with pytest.raises(Crash):
        consumer.poll(block_s=0.0)
    monkeypatch.undo()
    intent_left = consumer.intent_path.exists()
    assert intent_left == (where != "before_intent")
    if where == "after_commit":
        assert stream.committed("lake") == 80  # the batch is committed, its intent still there

    restarted_stream = SegmentLog(tmp_path / "log")
    drain(make_consumer(restarted_stream, tmp_path / "lake"))
    totals = landed_totals(tmp_path / "lake")
    assert totals == {"rows_in": 120, "accepted": 120 - 18, "quarantined": 18, "batches": 3}  # counts exact
    ids = lake_ids(tmp_path / "lake")
    assert len(ids) == len(set(ids)) == totals["accepted"]  # none lost, none twice
    reports = [json.loads(p.read_text()) for p in (tmp_path / "lake" / "batches").glob("stream-*.json")]
    assert all(r["by_reason"] == {"unknown_profile_id": 6} for r in reports)  # no duplicate_in_lake
    assert restarted_stream.lag("lake") == 0
    assert not consumer.intent_path.exists()


@pytest.mark.parametrize("where", ["before_commit", "after_commit"])
def test_a_landed_batch_is_not_replayed_on_recovery(tmp_path: Path, monkeypatch, where: str) -> None:
    """Killed after landing: recovery commits without reading the stream or rewriting a file, so
    it works even when the stream has dropped the entries since."""
    stream = SegmentLog(tmp_path / "log")
    stream.append(stream_events(40, bad_every=7))
    consumer = make_consumer(stream, tmp_path / "lake")
    crash_at(where, consumer, stream, monkeypatch)
    with pytest.raises(Crash):
        consumer.poll(block_s=0.0)
    monkeypatch.undo()
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "lake").rglob("*.parquet")}

    restarted_stream = SegmentLog(tmp_path / "log")
    monkeypatch.setattr(restarted_stream, "replay", lambda positions: [])  # as if trimmed by retention
    restarted = make_consumer(restarted_stream, tmp_path / "lake")
    report = restarted.recover()
    assert report is not None and report.already_ingested
    assert (report.rows_in, report.accepted, report.quarantined) == (40, 34, 6)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "lake").rglob("*.parquet")} == files  # nothing rewritten
    assert restarted_stream.lag("lake") == 0 and not restarted.intent_path.exists()
    assert restarted.recover() is None


def test_an_unlanded_batch_whose_entries_are_gone_stops_the_consumer(tmp_path: Path, monkeypatch) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append(stream_events(40))
    consumer = make_consumer(stream, tmp_path / "lake")
    crash_at("before_write", consumer, stream, monkeypatch)
    with pytest.raises(Crash):
        consumer.poll(block_s=0.0)
    monkeypatch.undo()
    monkeypatch.setattr(stream, "replay", lambda positions: [])
    with pytest.raises(RuntimeError, match="lost entries"):
        make_consumer(stream, tmp_path / "lake").recover()


def test_an_event_already_in_the_lake_is_quarantined_as_duplicate(tmp_path: Path) -> None:
    stream = SegmentLog(tmp_path / "log", dedupe_window_events=0)  # the stream forgot the id
    stream.append(stream_events(10))
    consumer = make_consumer(stream, tmp_path / "lake", flush_events=10)
    drain(consumer)
    stream.append(stream_events(2, start=3))  # the same events (ids and ts), again
    drain(consumer)
    totals = landed_totals(tmp_path / "lake")
    assert (totals["accepted"], totals["quarantined"]) == (10, 2)


def test_the_buffer_flushes_when_old_enough(tmp_path: Path) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append(stream_events(3))
    consumer = make_consumer(stream, tmp_path / "lake", flush_events=1000, flush_interval_s=0.0)
    report = consumer.poll(block_s=0.0)
    assert report is not None and report.accepted == 3


def test_realtime_applies_in_order_and_retries_after_a_failed_write(tmp_path: Path) -> None:
    stream = SegmentLog(tmp_path / "log")
    applied: list[tuple[int, list[str]]] = []
    down = {"now": True}

    def apply(pid: int, events: list[dict]) -> str:
        if down["now"]:
            raise ConnectionError("store down")
        applied.append((pid, [e["event_id"] for e in events]))
        assert all(a["ts"] <= b["ts"] for a, b in zip(events, events[1:]))
        return f"state-{pid}"

    seeds = RecentPlays(n=2)
    consumer = RealtimeConsumer(stream, apply, seeds=seeds)
    rows = [event(1, "play", 1, 100, 2.0, fraction_watched=0.3), event(2, "play", 1, 101, 1.0, fraction_watched=0.3),
            event(3, "play", 1, 102, 3.0, fraction_watched=0.3), event(4, "heartbeat", 2, 100, 1.0, position_s=5.0)]
    stream.append(rows)
    with pytest.raises(ConnectionError):
        consumer.catch_up()
    assert stream.lag("realtime") == 4  # nothing committed
    down["now"] = False
    states = consumer.catch_up()
    assert states == {1: "state-1", 2: "state-2"} and stream.lag("realtime") == 0
    assert applied == [(1, ["e2", "e1", "e3"]), (2, ["e4"])]
    assert seeds.get(1) == (102, 100) and seeds.get(2) == ()
    assert consumer.catch_up() == {}


def test_ts_of_the_stream_is_the_events_time(tmp_path: Path) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append([event(1, "play", 1, 100, 5.0, fraction_watched=0.3)])
    seen: list = []
    RealtimeConsumer(stream, lambda pid, evs: seen.extend(evs)).catch_up()
    assert seen[0]["ts"] == T0 + timedelta(hours=5)
