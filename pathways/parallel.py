"""``ordered_map``: a function over a stream of independent blocks, a few threads at a time, results in order.

The batch stages' heavy steps (numpy sorts and gathers, faiss, torch, zlib, SQLite) release the
GIL, so on a small machine two threads in one process keep both cores busy without copying models
into worker processes. Results come back in the order of the inputs (so files written from them
are the same bytes on any number of threads), and at most ``2 x threads`` blocks are in flight:
memory stays bounded by the block, whatever the length of the stream. (``ThreadPoolExecutor.map`` would
submit the whole stream at once: its ``buffersize`` bound arrives only in Python 3.14.)

``Prefetched``: a stream read ahead by one background thread, so that producing the next block (a
pass over the lake, Python that builds contexts) overlaps whatever the consumer does meanwhile
(loading models, writing results).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

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


_END = object()


class Prefetched(Generic[Out]):
    """``items`` read by a background thread at most ``depth`` ahead of the consumer. An error of
    the stream is raised in the consumer at its place; ``close()`` stops the thread (after the
    item it is producing) and closes the stream (a generator's ``finally`` runs on that thread)."""

    def __init__(self, items: Iterable[Out], depth: int = 2, name: str = "prefetch") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, args=(iter(items),), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[Out]) -> None:
        try:
            for item in items:
                if not self._put((True, item)):
                    return
            self._put((True, _END))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Prefetched[Out]:
        return self

    def __next__(self) -> Out:
        if self._finished:
            raise StopIteration
        ok, item = self._queue.get()
        if not ok:
            self._finished = True
            raise item
        if item is _END:
            self._finished = True
            raise StopIteration
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop reading ahead and close the stream; waits for the item in production."""
        self._finished = True
        self._stop.set()
        self._thread.join()
