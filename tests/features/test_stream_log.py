"""The embedded segment log: the conformance suite, plus torn tails, segments and the writer lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from features.stream import StreamUnavailable
from features.stream.segment_log import SegmentLog
from tests.features.stream_conformance import StreamConformance, ev


class TestSegmentLog(StreamConformance):
    @pytest.fixture
    def make_stream(self, tmp_path: Path):
        opened: list[SegmentLog] = []

        def make() -> SegmentLog:
            for log in opened:  # a restart: the previous process is gone (its writer lock with it)
                log.close()
            opened.append(SegmentLog(tmp_path / "log"))
            return opened[-1]

        yield make
        for log in opened:
            log.close()

    @pytest.fixture
    def full_stream(self, tmp_path: Path):
        log = SegmentLog(tmp_path / "full", max_backlog_events=4)
        log.committed("g")  # the group exists before the events: its backlog counts
        yield log
        log.close()


def test_a_torn_tail_is_cut_and_appends_continue(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append([ev(i) for i in range(3)])
    log.close()
    segment = next((tmp_path / "segments").glob("*.seg"))
    whole = segment.stat().st_size
    with open(segment, "ab") as fh:  # a crash in the middle of the next write
        fh.write(b"\x40\x00\x00\x00garbage")
    reader = SegmentLog(tmp_path)
    assert [e.event_id for e in reader.read("g", "c", 10)] == ["e0", "e1", "e2"]  # stops before the tear
    writer = SegmentLog(tmp_path)
    done = writer.append([ev(3)])
    assert segment.stat().st_size > whole and done[0].position == "3"
    assert [e.event_id for e in reader.read("g", "c", 10)] == ["e3"]
    writer.close()


def test_a_corrupt_record_is_not_delivered(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append([ev(0), ev(1)])
    log.close()
    segment = next((tmp_path / "segments").glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # flip a byte of the last record's payload
    segment.write_bytes(bytes(data))
    assert [e.event_id for e in SegmentLog(tmp_path).read("g", "c", 10)] == ["e0"]


def test_segments_roll_and_consumed_old_ones_are_dropped(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path, segment_bytes=4096, retention_hours=1e-9)
    for k in range(10):
        log.append([ev(10 * k + i) for i in range(10)])
    assert len(list((tmp_path / "segments").glob("*.seg"))) > 3
    got = log.read("g", "c", 1000)
    assert [e.event_id for e in got] == [f"e{i}" for i in range(100)]
    log.commit("g", [got[-1].position])
    log.append([ev(1000 + i) for i in range(40)])  # rolls: fully consumed segments go
    segments = sorted((tmp_path / "segments").glob("*.seg"))
    assert int(segments[0].stem) > 0
    assert [e.event_id for e in log.read("g", "c", 1000)] == [f"e{1000 + i}" for i in range(40)]
    log.close()


def test_the_recent_id_index_survives_a_restart(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append([ev(1), ev(2)])
    log.close()
    again = SegmentLog(tmp_path)
    assert [a.duplicate for a in again.append([ev(2), ev(3)])] == [True, False]
    again.close()


def test_one_writer_process_at_a_time(tmp_path: Path) -> None:
    first = SegmentLog(tmp_path)
    first.append([ev(1)])
    pid = os.fork()
    if pid == 0:  # another process must not append while the first holds the lock
        try:
            SegmentLog(tmp_path).append([ev(2)])
            os._exit(1)
        except StreamUnavailable:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    first.close()


def test_a_torn_commit_record_keeps_the_previous_commit(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path)
    log.append([ev(i) for i in range(4)])
    log.commit("g", ["1"])
    commits = tmp_path / "groups" / "g.commits"
    with open(commits, "ab") as fh:
        fh.write(b"\x07\x00\x00")  # a crash in the middle of the next commit
    assert log.committed("g") == 2
    log.commit("g", ["2"])
    assert SegmentLog(tmp_path).committed("g") == 3
    log.close()
