"""Artwork impressions logged by the server from what it chose, so no client can forge a propensity.

The bandit's off-policy evaluation weighs each logged impression by 1 / propensity: a client that
could post ``artwork_impression`` events with a propensity of 1e-9 would sway it at will. So the
API refuses such events from clients (only an ``admin`` token may backfill them), and serving logs
them itself: for each page whose artwork came from a policy, the titles of its first
``serving.impression_rows_logged`` rows, with the artwork id, the propensity and the policy version
the server used, and the page's request id as the session (``event_id = <request id>:<title id>``,
so a replayed log counts once). ``ImpressionLog.log`` only queues (no I/O on the request path); a
daemon thread appends the queue to the event stream in batches, and drops (counted) what does not
fit in ``max_pending``, never blocking a page.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np

from features.schema import EVENT_SCHEMA, EventType
from features.stream import EventStream
from pathways.types import ArtworkChoice, CompactRows

log = logging.getLogger(__name__)

EMPTY_EVENT: dict[str, Any] = {name: None for name in EVENT_SCHEMA.names}


def impression_rows(
    rows: CompactRows, choice: ArtworkChoice, profile_id: int, request_id: str, n_rows: int, now: datetime | None = None
) -> list[dict[str, Any]]:
    """``EVENT_SCHEMA`` rows for the titles of the first ``n_rows`` rows of a page, as chosen."""
    if n_rows <= 0 or not len(rows.headers) or choice.artwork_ids is None:
        return []
    ts = now or datetime.now(UTC)
    end = int(rows.offsets[min(n_rows, len(rows.headers))])
    positions = rows.positions()
    row_of = np.repeat(np.arange(len(rows.headers)), np.diff(rows.offsets))
    return [
        {**EMPTY_EVENT, "event_id": f"{request_id}:{t}", "event_type": EventType.ARTWORK_IMPRESSION.value, "ts": ts,
         "profile_id": int(profile_id), "title_id": t, "session_id": request_id, "row_index": r, "position": p,
         "artwork_id": a, "propensity": q, "policy_version": choice.policy_version}
        for t, r, p, a, q in zip(rows.title_ids[:end].tolist(), row_of[:end].tolist(), positions[:end].tolist(),
                                 choice.artwork_ids[:end].tolist(), choice.propensities[:end].tolist())
    ]


class ImpressionLog:
    """Queues impressions per page and appends them to ``stream`` from a daemon thread."""

    def __init__(self, stream: EventStream, n_rows: int, max_pending: int = 100_000, batch: int = 5_000) -> None:
        self.stream = stream
        self.n_rows = n_rows
        self.batch = batch
        self.dropped = 0
        self.appended = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def log(self, rows: CompactRows, choice: ArtworkChoice, profile_id: int, request_id: str) -> int:
        """Queue the page's impressions (policy artwork only); returns how many were queued."""
        if choice.fallback_reason is not None or choice.policy_version == "default":
            return 0
        events = impression_rows(rows, choice, profile_id, request_id, self.n_rows)
        queued = 0
        for event in events:
            try:
                self._queue.put_nowait(event)
                queued += 1
            except queue.Full:
                self.dropped += len(events) - queued
                break
        if queued:
            self._start()
        return queued

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float = 1.0) -> int:
        """Append what is queued now (the thread does this continuously); returns how many were appended."""
        events: list[dict[str, Any]] = []
        try:
            events.append(self._queue.get(timeout=timeout_s))
            while len(events) < self.batch:
                events.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if not events:
            return 0
        try:
            self.stream.append(events)
        except Exception as exc:  # noqa: BLE001 - the log must never take the service down
            log.warning("dropping %d artwork impressions: %s", len(events), exc)
            self.dropped += len(events)
            return 0
        self.appended += len(events)
        return len(events)

    def _run(self) -> None:
        while True:
            self.flush()
