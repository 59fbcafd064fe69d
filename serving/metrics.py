"""Serving metrics in Prometheus format: requests, latency, page outcomes, degraded rows, event intake.

Every replica records into prometheus-client's collectors; with ``PROMETHEUS_MULTIPROC_DIR`` set
(several replica processes on one machine) ``render()`` aggregates all of them, so a scrape of any
replica sees the whole app. ``MetricsMiddleware`` times each HTTP request by its route template
(``/api/v1/pathways``, never the raw path, so labels stay few).

| metric | type | labels |
| --- | --- | --- |
| ``pathways_http_requests_total`` | counter | route, method, status |
| ``pathways_http_request_seconds`` | histogram | route |
| ``pathways_pages_total`` | counter | personalized (``true``/``false``), reason |
| ``pathways_degraded_rows_total`` | counter | reason |
| ``pathways_events_total`` | counter | outcome (``accepted``, ``rejected``) |
| ``pathways_stage_seconds`` | histogram | stage (``snapshot_read``, ``overlay``, ``artwork``, ``serialize``) |
| ``pathways_cells_total`` | counter | cell (pages served per experiment cell) |
| ``pathways_online_store_errors_total`` | counter | stage |
| ``pathways_refused_total`` | counter | status (401, 403, 413, 429, 503 ...), reason (auth, rate_limit, body, overload) |
| ``pathways_snapshot_info`` | gauge | version (1 for the live one) |
| ``pathways_snapshot_age_seconds`` | gauge | (since the snapshot was published) |
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from serving.guards import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("pathways_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "pathways_http_request_seconds", "HTTP request latency (seconds)", ["route"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5),
)
PAGES = Counter("pathways_pages_total", "Pages served", ["personalized", "reason"])
DEGRADED_ROWS = Counter("pathways_degraded_rows_total", "Rows served from a lower fallback rung", ["reason"])
EVENTS = Counter("pathways_events_total", "Events received through the API", ["outcome"])
STAGES = Histogram(
    "pathways_stage_seconds", "Time per page stage (seconds)", ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25),
)
CELLS = Counter("pathways_cells_total", "Pages served per experiment cell", ["cell"])
ONLINE_STORE_ERRORS = Counter("pathways_online_store_errors_total", "Online store reads that failed or overran", ["stage"])
IMPRESSIONS = Counter("pathways_artwork_impressions_total", "Artwork impressions the server logged",
                      ["outcome"])  # appended; dropped (queue full, or the stream failed)
REFUSED = Counter("pathways_refused_total", "Requests refused before any work", ["status", "reason"])
SNAPSHOT_INFO = Gauge("pathways_snapshot_info", "The live snapshot version (value 1)", ["version"], multiprocess_mode="max")
_live_version: str | None = None
SNAPSHOT_AGE = Gauge("pathways_snapshot_age_seconds", "Seconds since the live snapshot was published", multiprocess_mode="max")


_CHILDREN: dict[tuple[Any, ...], Any] = {}  # (metric, *labels) -> its child: one label lookup per label set


def _child(metric: Any, *labels: str) -> Any:
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = metric.labels(*labels)
        if len(_CHILDREN) < 10_000:  # reasons are few; bounded all the same
            _CHILDREN[key] = child
    return child


def record_page(personalized: bool, reason: str | None, degraded_rows: dict[str, int] | None = None) -> None:
    """Count one served page and its degraded rows by reason."""
    _child(PAGES, "true" if personalized else "false", reason or "").inc()
    for why, n in (degraded_rows or {}).items():
        _child(DEGRADED_ROWS, why).inc(n)


def record_stages(cell: str | None, stage_ms: dict[str, float], online_store_failed: str | None = None) -> None:
    """Stage latencies of one page, its cell, and an online-store failure in ``online_store_failed`` (a stage)."""
    for stage, ms in stage_ms.items():
        _child(STAGES, stage).observe(ms / 1000.0)
    if cell is not None:
        _child(CELLS, cell).inc()
    if online_store_failed is not None:
        ONLINE_STORE_ERRORS.labels(online_store_failed).inc()


def record_impressions(outcome: str, n: int) -> None:
    """``n`` artwork impressions ``queued``, ``appended`` to the stream, or ``dropped``."""
    _child(IMPRESSIONS, outcome).inc(n)


def record_refused(status: int, reason: str) -> None:
    REFUSED.labels(str(status), reason).inc()


def set_snapshot(version: str | None, published_at: float | None) -> None:
    """The live snapshot (``published_at``: epoch seconds, None when unknown)."""
    global _live_version
    if _live_version is not None and _live_version != version:
        SNAPSHOT_INFO.labels(_live_version).set(0)
    if version is not None:
        SNAPSHOT_INFO.labels(version).set(1)
    _live_version = version
    SNAPSHOT_AGE.set(time.time() - published_at if published_at else float("nan"))


# prometheus-client picks its value store (in memory, or files under PROMETHEUS_MULTIPROC_DIR) once,
# when it is imported; ``render`` reads the same store, even if the variable changes later in the
# process (Serve's local testing mode applies a deployment's runtime_env to the current process).
_MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of every process when multiprocess mode is on."""
    if _MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # label lookups once per label set

    def _observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route))
            if len(self._children) < 1000:  # routes x methods x statuses: few; bounded all the same
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, capture)
        finally:
            route: Any = scope.get("route")
            self._observe(getattr(route, "path", None) or "unmatched", scope.get("method", ""), status,
                          time.perf_counter() - start)
