"""Artwork impressions logged by the server from what it chose, so no client can forge a propensity.

The bandit's off-policy evaluation weighs each logged impression by 1 / propensity: a client that
could post ``artwork_impression`` events with a propensity of 1e-9 would sway it at will. So the
API refuses such events from clients (only an ``admin`` token may backfill them), and serving logs
them itself: for each page whose artwork came from a policy, the titles of its first
``serving.impression_rows_logged`` rows, with the artwork id, the propensity and the policy version
the server used, and the page's request id as the session (the lake lands them as
``artwork_impression`` events with ``event_id = <request id>:<title id>``, so a replayed log
counts once).

Off the request path: ``ImpressionLog.log`` puts ONE item per page on a bounded queue (the page's
impressions as arrays, ``PageImpressions``) and never blocks: when ``serving.impression_queue_pages``
pages are already waiting, the page's impressions are dropped and counted (``dropped``, and
``pathways_artwork_impressions_total{outcome="dropped"}``). A daemon thread appends queued pages
to the ``impressions`` stream (``open_stream(config, "impressions")``), ONE entry per page
(``features.stream.impressions.page_entry``: the arrays, no Python object per impression), in
batches. The real-time consumer reads only the ``events`` stream, so it never reads impressions;
the lake consumer of the impressions stream expands each page into its ``artwork_impression`` rows.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from features.stream import EventStream, open_stream
from features.stream.impressions import page_entry
from pathways.config import PathwaysConfig
from pathways.types import ArtworkChoice, CompactRows
from serving.metrics import record_impressions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageImpressions:
    """One page's logged impressions: parallel arrays (n,) over the titles of its first rows."""

    request_id: str
    profile_id: int
    policy_version: str
    ts: datetime
    title_ids: np.ndarray  # int64
    row_index: np.ndarray  # int64
    position: np.ndarray  # int64, column within the row
    artwork_ids: np.ndarray  # int64
    propensities: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.title_ids)

    @classmethod
    def of(cls, rows: CompactRows, choice: ArtworkChoice, profile_id: int, request_id: str, n_rows: int,
           now: datetime | None = None) -> PageImpressions | None:
        """The titles of the first ``n_rows`` rows of a page, as chosen; None when there are none."""
        k = min(n_rows, len(rows.headers))
        if k <= 0 or choice.artwork_ids is None:
            return None
        offsets = np.asarray(rows.offsets[: k + 1], np.int64)
        end = int(offsets[-1])
        lengths = np.diff(offsets)
        row_index = np.repeat(np.arange(k, dtype=np.int64), lengths)
        position = np.arange(end, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        return cls(request_id, int(profile_id), choice.policy_version, now or datetime.now(UTC),
                   rows.title_ids[:end], row_index, position, choice.artwork_ids[:end], choice.propensities[:end])

    def entry(self) -> dict[str, Any]:
        """As one entry of the impressions stream (``features.stream.impressions.page_entry``)."""
        return page_entry(self.request_id, self.profile_id, self.policy_version, self.ts, self.title_ids,
                          self.row_index, self.position, self.artwork_ids, self.propensities)


class ImpressionLog:
    """Queues one item per page (bounded: ``max_pages``, dropped and counted beyond) and appends
    them to ``stream`` (the impressions stream) from a daemon thread, one entry per page, at most
    ``batch`` pages per append."""

    def __init__(self, stream: EventStream, n_rows: int, max_pages: int = 1000, batch: int = 500) -> None:
        self.stream = stream
        self.n_rows = n_rows
        self.batch = batch
        self.dropped = 0
        self.appended = 0
        self._queue: queue.Queue[PageImpressions] = queue.Queue(maxsize=max_pages)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, config: PathwaysConfig) -> ImpressionLog:
        """The log over ``open_stream(config, "impressions")`` with ``config.serving``'s rows and queue."""
        return cls(open_stream(config, "impressions"), config.serving.impression_rows_logged,
                   config.serving.impression_queue_pages)

    def log(self, rows: CompactRows, choice: ArtworkChoice, profile_id: int, request_id: str) -> int:
        """Queue the page's impressions (policy artwork only); returns how many were queued (0 if dropped)."""
        if choice.fallback_reason is not None or choice.policy_version == "default":
            return 0
        page = PageImpressions.of(rows, choice, profile_id, request_id, self.n_rows)
        if page is None or not len(page):
            return 0
        try:
            self._queue.put_nowait(page)
        except queue.Full:  # never block a page: drop and count
            self._drop(len(page))
            return 0
        if self._thread is None:
            self._start()
        return len(page)

    def _drop(self, n: int) -> None:
        self.dropped += n
        record_impressions("dropped", n)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float = 1.0) -> int:
        """Append what is queued now (the thread does this continuously); returns how many impressions
        were appended."""
        pages: list[PageImpressions] = []
        try:
            pages.append(self._queue.get(timeout=timeout_s))
            while len(pages) < self.batch:
                pages.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if not pages:
            return 0
        n = sum(len(p) for p in pages)
        try:
            self.stream.append([p.entry() for p in pages])
        except Exception as exc:  # noqa: BLE001 - the log must never take the service down
            log.warning("dropping %d artwork impressions of %d pages: %s", n, len(pages), exc)
            self._drop(n)
            return 0
        self.appended += n
        record_impressions("appended", n)
        return n

    def _run(self) -> None:
        while True:
            self.flush()
