"""``ordered_map``: results in input order on any number of threads, inputs read lazily, failures raised in place."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pathways.parallel import Prefetched, ordered_map


def _slow_square(x: int) -> int:
    time.sleep(0.002 * (5 - x % 5))  # later inputs often finish first
    return x * x


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_results_come_in_input_order(threads: int) -> None:
    assert list(ordered_map(_slow_square, range(23), threads)) == [x * x for x in range(23)]


def test_inputs_are_read_at_most_two_per_thread_ahead_of_the_consumer() -> None:
    read: list[int] = []

    def items() -> Iterator[int]:
        for x in range(100):
            read.append(x)
            yield x

    out = ordered_map(_slow_square, items(), threads=2)
    assert next(out) == 0
    assert len(read) <= 2 * 2 + 1  # never the whole stream
    assert list(out) == [x * x for x in range(1, 100)]


def test_a_failing_block_raises_in_the_consumer_at_its_place() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            started.append(x)
        if x == 3:
            raise RuntimeError("block 3 failed")
        return x

    got: list[int] = []
    with pytest.raises(RuntimeError, match="block 3 failed"):
        for value in ordered_map(fn, range(50), threads=2):
            got.append(value)
    assert got == [0, 1, 2]
    assert max(started) < 10  # the blocks after the failure were dropped, not all run


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        list(ordered_map(_slow_square, range(3), threads=0))


def test_prefetched_reads_ahead_in_order_and_at_most_depth_ahead() -> None:
    read: list[int] = []
    produced = threading.Event()

    def items() -> Iterator[int]:
        for x in range(20):
            read.append(x)
            if x == 2:
                produced.set()
            yield x

    stream = Prefetched(items(), depth=2)
    assert produced.wait(5)  # the thread read ahead before anyone asked
    time.sleep(0.05)
    assert read == [0, 1, 2]  # two queued (depth) and one in the thread's hand, no more
    assert list(stream) == list(range(20))
    assert list(stream) == []  # exhausted stays exhausted


def test_prefetched_raises_the_streams_error_at_its_place_and_runs_its_cleanup() -> None:
    cleaned = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield 0
            yield 1
            raise OSError("lake unreadable")
        finally:
            cleaned.set()

    got: list[int] = []
    with pytest.raises(OSError, match="lake unreadable"):
        for x in Prefetched(items()):
            got.append(x)
    assert got == [0, 1] and cleaned.wait(5)


def test_prefetched_close_stops_the_thread_and_closes_the_stream() -> None:
    cleaned = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            cleaned.set()

    stream = Prefetched(items(), depth=3)
    assert next(stream) == 0
    stream.close()
    assert cleaned.is_set() and not stream._thread.is_alive()
    with pytest.raises(StopIteration):
        next(stream)
    with pytest.raises(ValueError, match="depth"):
        Prefetched(iter(()), depth=0)
