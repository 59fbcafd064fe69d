"""One conformance suite for every ``EventStream`` backend: a test class sets ``make_stream``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from features.stream.base import EventStream

MakeStream = Callable[[], EventStream]


def ev(i: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"e{i}", "event_type": "play", "ts": 1_790_000_000_000 + i, "profile_id": 1 + i % 3,
            "title_id": 10 + i % 5, "fraction_watched": 0.5, **extra}


class StreamConformance:
    """Behaviour every backend must have. Subclasses provide the ``make_stream`` fixture: calling it
    twice gives two handles on the same stream (a restarted process)."""

    def test_append_read_commit_in_order(self, make_stream: MakeStream) -> None:
        stream = make_stream()
        done = stream.append([ev(i) for i in range(5)])
        assert [a.event_id for a in done] == [f"e{i}" for i in range(5)] and not any(a.duplicate for a in done)
        got = stream.read("g", "c1", 3)
        assert [e.event_id for e in got] == ["e0", "e1", "e2"]
        assert got[0].event == ev(0)
        stream.commit("g", [e.position for e in got])
        rest = stream.read("g", "c1", 10)
        assert [e.event_id for e in rest] == ["e3", "e4"]
        assert stream.lag("g") == 2
        stream.commit("g", [e.position for e in rest])
        assert stream.lag("g") == 0 and stream.read("g", "c1", 10) == []

    def test_groups_are_independent(self, make_stream: MakeStream) -> None:
        stream = make_stream()
        stream.append([ev(i) for i in range(4)])
        a = stream.read("lake", "c", 10)
        stream.commit("lake", [e.position for e in a])
        assert len(stream.read("realtime", "c", 10)) == 4 and stream.lag("lake") == 0

    def test_a_retried_event_id_is_a_duplicate(self, make_stream: MakeStream) -> None:
        stream = make_stream()
        first = stream.append([ev(1), ev(2)])
        again = stream.append([ev(2), ev(3), ev(3)])
        assert [(a.event_id, a.duplicate) for a in again] == [("e2", True), ("e3", False), ("e3", True)]
        assert again[0].position == first[1].position
        assert [e.event_id for e in stream.read("g", "c", 10)] == ["e1", "e2", "e3"]

    def test_a_restarted_consumer_resumes_from_its_commit(self, make_stream: MakeStream) -> None:
        stream = make_stream()
        stream.append([ev(i) for i in range(6)])
        got = stream.read("g", "c1", 4)
        stream.commit("g", [e.position for e in got[:2]])  # crashes after reading 4, committing 2
        restarted = make_stream()
        assert [e.event_id for e in restarted.read("g", "c1", 10)] == ["e2", "e3", "e4", "e5"]

    def test_rewind_reads_uncommitted_entries_again(self, make_stream: MakeStream) -> None:
        stream = make_stream()
        stream.append([ev(i) for i in range(3)])
        first = stream.read("g", "c", 10)
        stream.rewind("g")
        assert [e.position for e in stream.read("g", "c", 10)] == [e.position for e in first]

    def test_replay_returns_exactly_the_positions(self, make_stream: MakeStream) -> None:
        stream = make_stream()
        done = stream.append([ev(i) for i in range(5)])
        wanted = [done[1].position, done[2].position, done[4].position]
        assert [e.event_id for e in make_stream().replay(wanted)] == ["e1", "e2", "e4"]

    def test_a_full_stream_refuses_the_whole_call(self, make_stream: MakeStream, full_stream: EventStream) -> None:
        from features.stream import StreamFull

        full_stream.append([ev(i) for i in range(3)])
        with pytest.raises(StreamFull):
            full_stream.append([ev(10), ev(11)])
        assert [e.event_id for e in full_stream.read("g", "c", 10)] == ["e0", "e1", "e2"]
