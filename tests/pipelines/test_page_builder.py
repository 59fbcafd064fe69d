"""PageBuilder.build_blocks: blocks built on several threads come back in block order, with at
most two blocks in flight per thread (memory stays bounded by the block)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from pathways.types import ProfileContext
from pipelines.page_builder import BuiltPage, PageBuilder


class _SlowBuilder(PageBuilder):
    """``build`` that takes longer for even blocks (so later blocks finish first) and counts how
    many blocks are in flight at once."""

    def __init__(self) -> None:  # no models: only the block scheduling is under test
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.threads: set[str] = set()

    def build(self, profiles: list[ProfileContext]) -> list[BuiltPage]:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.threads.add(threading.current_thread().name)
        time.sleep(0.02 if profiles[0].profile_id % 2 == 0 else 0.001)
        with self.lock:
            self.in_flight -= 1
        return [BuiltPage(p.profile_id, p.cell, str(p.profile_id).encode(), 1) for p in profiles]


def _blocks(n: int) -> list[list[ProfileContext]]:
    return [[ProfileContext(b * 10 + i, "US", 4) for i in range(3)] for b in range(n)]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_blocks_come_back_in_order_with_bounded_work_in_flight(threads: int) -> None:
    builder = _SlowBuilder()
    blocks = _blocks(12)
    pulled = 0

    def source():
        nonlocal pulled
        for block in blocks:
            pulled += 1
            yield block

    got, waiting = [], []
    for k, part in enumerate(builder.build_blocks(source(), threads)):
        waiting.append(pulled - k)  # blocks taken from the input and not handed back yet (this one included)
        got.append(part)
    assert [[p.profile_id for p in part] for part in got] == [[p.profile_id for p in b] for b in blocks]
    assert max(waiting) <= 2 * threads
    assert builder.most <= threads
    assert (len(builder.threads) > 1) == (threads > 1)  # the blocks were spread over the threads


def test_a_failing_block_raises_in_the_caller() -> None:
    class Failing(_SlowBuilder):
        def build(self, profiles: list[ProfileContext]) -> list[BuiltPage]:
            if profiles[0].profile_id == 30:
                raise RuntimeError("block 3 failed")
            return super().build(profiles)

    with pytest.raises(RuntimeError, match="block 3 failed"):
        list(Failing().build_blocks(iter(_blocks(8)), 2))


def test_each_builder_thread_runs_openmp_on_one_thread() -> None:
    """OpenMP's limit is per thread: a thread the pool starts must set its own (faiss and the tree
    ranker read it), or two builder threads run a team each on every core."""
    script = """
import os, threading
os.environ.pop("OMP_NUM_THREADS", None)
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from pipelines.page_builder import one_openmp_thread, single_threaded
single_threaded()
seen = {}
def run(limit):
    before = _openmp_effective_n_threads()
    if limit:
        one_openmp_thread()
        one_openmp_thread()  # once per thread: the second call changes nothing
    seen[limit] = (before, _openmp_effective_n_threads())
for limit in (False, True):
    t = threading.Thread(target=run, args=(limit,)); t.start(); t.join()
print(seen[False][1], seen[True][0], seen[True][1])
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    unlimited, before, after = map(int, out.stdout.split())
    assert unlimited == before  # a new thread starts with the default team, whatever the main thread set
    assert after == 1
    if (os.cpu_count() or 1) > 1:
        assert before > 1  # the limit was not there until the thread set it
