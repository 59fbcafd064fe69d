"""``ordered_map``: a function over a stream of independent blocks, a few threads at a time, results in order.

The batch stages' heavy steps (numpy sorts and gathers, faiss, torch, zlib, SQLite) release the
GIL, so on a small machine two threads in one process keep both cores busy without copying models
into worker processes. Results come back in the order of the inputs (so files written from them
are the same bytes on any number of threads), and at most ``2 x threads`` blocks are in flight:
memory stays bounded by the block, whatever the length of the stream. (``ThreadPoolExecutor.map`` would
submit the whole stream at once: its ``buffersize`` bound arrives only in Python 3.14.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def ordered_map(fn: Callable[[In], Out], items: Iterable[In], threads: int = 1, name: str = "block") -> Iterator[Out]:
    """``map(fn, items)`` with ``threads`` calls at once; ``items`` is read lazily (at most ``2 x
    threads`` ahead of the consumer). A failing call raises in the consumer at its place in the order,
    and the blocks not started yet are dropped."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if threads == 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
        pending: deque[Future[Out]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a failed block (or a consumer that stops early): drop the blocks not started yet
            for future in pending:
                future.cancel()
