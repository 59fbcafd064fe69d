"""One deadline per page request, split into stage budgets; a stage that overruns or fails reports why.

``Deadline(total_ms)`` starts when the request does; ``budget_s(stage_ms)`` is what a stage may
spend: its own budget, or what is left of the deadline if that is less. ``run_stage`` runs a
blocking call (an online-store or page-store read, the artwork policy) in the worker pool and waits
at most that long: it returns ``(value, None)``, or ``(None, reason)`` when the call overran or
raised, so the caller degrades only that stage's part of the page. Stage times go to
``StageTimes`` (milliseconds, for the metrics and the ``Server-Timing`` header).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

SNAPSHOT_READ = "snapshot_read"
OVERLAY = "overlay"
ARTWORK = "artwork"
SERIALIZE = "serialize"
STAGES = (SNAPSHOT_READ, OVERLAY, ARTWORK, SERIALIZE)


@dataclass
class Deadline:
    """The request's deadline: ``total_ms`` from ``start`` (``time.perf_counter`` seconds)."""

    total_ms: float
    start: float = field(default_factory=time.perf_counter)

    def left_s(self) -> float:
        return max(0.0, self.total_ms / 1000.0 - (time.perf_counter() - self.start))

    def budget_s(self, stage_ms: float) -> float:
        """The time a stage may take: its own budget, capped by what is left of the deadline."""
        return min(stage_ms / 1000.0, self.left_s())


@dataclass
class StageTimes:
    """Milliseconds spent per stage of one request (only the stages that ran)."""

    ms: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, since: float) -> None:
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - since) * 1000.0

    def header(self) -> str:
        """As a ``Server-Timing`` header value: ``overlay;dur=1.23, artwork;dur=0.40``."""
        return ", ".join(f"{k};dur={v:.2f}" for k, v in self.ms.items())


def wait_stage(
    future: Future[T], budget_s: float, what: str, known: Mapping[type[BaseException], str] | None = None
) -> tuple[T | None, str | None]:
    """The result of ``future`` within ``budget_s``, or None and why not: over budget, the reason
    ``known`` gives for the error's type, or ``"<what> failed: <error type>"``."""
    try:
        return future.result(timeout=max(budget_s, 0.0)), None
    except FutureTimeout:
        future.cancel()
        return None, f"{what} over budget ({budget_s * 1000.0:.0f} ms)"
    except Exception as exc:  # noqa: BLE001 - a failed stage degrades its own part, never the request
        for kind, reason in (known or {}).items():
            if isinstance(exc, kind):
                return None, reason
        return None, f"{what} failed: {type(exc).__name__}"


def run_stage(pool: ThreadPoolExecutor, fn: Callable[[], T], budget_s: float, what: str,
              inline: bool = False) -> tuple[T | None, str | None]:
    """``fn()`` in ``pool`` within ``budget_s`` (see ``wait_stage``); no budget left: not started.
    ``inline``: run in this thread (bounded CPU work: no hop), its error turned into the same reason."""
    if budget_s <= 0.0:
        return None, f"{what} skipped: request deadline reached"
    return wait_stage(start_stage(pool, fn, inline), budget_s, what)


def start_stage(pool: ThreadPoolExecutor, fn: Callable[[], T], inline: bool = False) -> Future[T]:
    """``fn()`` submitted to ``pool``, or with ``inline`` run now in this thread (work bounded by
    itself: no hop), its result or error in the returned future either way."""
    if not inline:
        return pool.submit(fn)
    done: Future[T] = Future()
    try:
        done.set_result(fn())
    except Exception as exc:  # noqa: BLE001 - reported as the pool would report it
        done.set_exception(exc)
    return done


class StagePool(ThreadPoolExecutor):
    """The threads a page's stages run in; ``start(fn, arg, inline)``: ``start_stage`` of ``fn(arg)``."""

    def start(self, fn: Callable[[Any], T], arg: Any, inline: bool = False) -> Future[T]:
        return start_stage(self, lambda: fn(arg), inline)
