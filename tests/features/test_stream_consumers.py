"""The lake and real-time consumer groups: exactly-once accounting by id across crashes, lag,
one file per day partition and flush, and the real-time state applied in order."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features.ingest import read_events
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


@pytest.mark.parametrize("where", ["before_intent", "in_land", "before_commit"])
def test_a_crashed_consumer_resumes_without_loss_or_double_landing(tmp_path: Path, monkeypatch, where: str) -> None:
    stream = SegmentLog(tmp_path / "log")
    stream.append(stream_events(120, bad_every=7))
    consumer = make_consumer(stream, tmp_path / "lake")
    consumer.poll(block_s=0.0)  # first batch landed and committed
    import features.stream.lake as lake_module

    if where == "before_intent":
        monkeypatch.setattr(consumer, "_land", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    elif where == "in_land":
        real_land = lake_module.land

        def land_then_crash(*args, **kwargs):
            real_land(*args, **kwargs)  # files and report written ...
            raise Crash()  # ... and the process dies before the commit

        monkeypatch.setattr(lake_module, "land", land_then_crash)
    else:
        monkeypatch.setattr(stream, "commit", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        consumer.poll(block_s=0.0)
    monkeypatch.undo()

    restarted_stream = SegmentLog(tmp_path / "log")
    drain(make_consumer(restarted_stream, tmp_path / "lake"))
    totals = landed_totals(tmp_path / "lake")
    assert totals["rows_in"] == 120 and totals["quarantined"] == len(range(0, 120, 7))
    ids = lake_ids(tmp_path / "lake")
    assert len(ids) == len(set(ids)) == totals["accepted"]  # none lost, none twice
    assert restarted_stream.lag("lake") == 0


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
