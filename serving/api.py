"""The HTTP layer: a FastAPI app over ``PathwaysService`` (``create_app(service)``).

Every request passes, in order: ``RequestIdMiddleware`` (``X-Request-ID`` in, out and in the log
records), ``MetricsMiddleware`` (Prometheus, by route template), ``BodyLimitMiddleware`` (413 past
``serving.max_body_bytes`` before a byte is parsed), then ``serving.access.AccessControl`` in the
handler (401 no or bad token, 429 with ``Retry-After`` past the subject's rate limit, 403 wrong
scope or another account's profile). Bodies are parsed in a worker thread (``guards.parse_json``:
every way JSON can fail is a 400 with a message, never a 500). Responses are bytes (orjson and the
pre-encoded title fragments of ``ServedPage.to_json``), never ``jsonable_encoder``.

- ``GET /api/v1/pathways?profile_id=&row_count=`` (``pages:read``): the page; 200 for every valid
  request (fallback pages say ``personalized: false`` and why; degraded rows are listed in
  ``degraded``); beyond ``serving.overload_inflight`` requests in flight the precomputed fallback
  at once (reason ``overloaded``), beyond ``serving.max_inflight`` 503 with ``Retry-After``; 422
  for a missing, non-integer or out-of-range parameter, 400 for an unknown or repeated one.
  Pages are built by ``serving.page_workers`` threads per replica (CPU-bound work: more threads
  only fight over the GIL and starve the event loop that answers overloaded requests); requests
  waiting for one count as in flight, and one that waited past ``serving.queue_budget_ms`` gets
  the precomputed fallback (``overloaded``) from the worker at once: no request waits unbounded.
- ``POST /api/v1/events`` (``events:write``): one event or a list (``EventIn``); 202 once the
  event stream has them, with a result per event (accepted, duplicate, or rejected with the
  ingest rule it failed; 422 when every event is rejected); 422 for events that do not parse,
  touch more than ``serving.max_profiles_per_request`` profiles or carry a timestamp out of range;
  403 for ``artwork_impression`` events (the server logs those) or another account's profile; 400
  for a body that is not JSON, 413 past ``serving.max_events_per_request``; 503 with
  ``Retry-After`` when the stream is full or its broker is down.
- ``PUT /api/v1/playback/{session_id}/heartbeat`` (``events:write``): ``HeartbeatIn``; 202 with the
  title's status; the same body checks.
- ``GET /healthz`` (200 ``ok``/``degraded``, 503 ``unavailable``), ``/livez`` (the process
  answers), ``/readyz`` (503 until a snapshot with pages is loaded), ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from features.stream import StreamUnavailable
from pathways.pagestore import PageStoreUnavailable
from serving import metrics
from serving.access import AccessControl, OwnershipUnknown, as_event_list, check_events, read_body_json
from serving.auth import EVENTS_WRITE, PAGES_READ, AuthError
from serving.events import INT64_MAX, EventIn, HeartbeatIn, RecordResult
from serving.guards import BadBody, BodyLimitMiddleware, RequestIdMiddleware
from serving.logic import ONLINE_STORE_UNAVAILABLE, PathwaysService, ServedPage
from serving.stages import OVERLAY

log = logging.getLogger(__name__)

PAGE_PATH = "/api/v1/pathways"
PAGE_PARAMS = frozenset({"profile_id", "row_count"})
_EVENTS = TypeAdapter(list[EventIn])
JSON = "application/json"


def json_response(body: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=JSON, headers=headers)


def _problems(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as [{"field": "query.row_count", "message": ...}]."""
    return [{"field": ".".join(str(p) for p in e.get("loc", ())) or "body", "message": str(e.get("msg", ""))} for e in errors]


def _only_known_params(request: Request, allowed: frozenset[str]) -> None:
    keys = [k for k, _ in request.query_params.multi_items()]
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise HTTPException(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise HTTPException(400, f"query parameter(s) given more than once: {', '.join(repeated)}")


def _record_body(result: RecordResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**result.to_body(), **(extra or {})}


def _unavailable(what: str, exc: Exception, retry_after_s: int) -> Response:
    """503 with Retry-After: the stream is full or its broker is down, or the profile records the
    events are checked against cannot be read; nothing was appended."""
    log.error("cannot append %s: %s", what, exc)
    return json_response({"error": f"{what} could not be stored ({type(exc).__name__}); retry"}, 503,
                         {"Retry-After": str(retry_after_s)})


def _published_at(manifest: Mapping[str, Any]) -> float | None:
    value = manifest.get("published_at") or manifest.get("created_at")
    try:
        return datetime.fromisoformat(str(value)).timestamp() if value else None
    except ValueError:
        try:
            return parsedate_to_datetime(str(value)).timestamp()
        except (TypeError, ValueError):
            return None


class LoadGate:
    """Requests in flight in this replica: ``overloaded`` past ``soft``, refused past ``hard``.

    Used from the event loop only (one thread), so a plain counter is enough."""

    def __init__(self, soft: int, hard: int) -> None:
        self.soft, self.hard, self.inflight = soft, hard, 0

    @contextmanager
    def enter(self) -> Iterator[str]:
        """Yields ``"ok"``, ``"overloaded"`` or ``"refuse"`` for the request entering now."""
        self.inflight += 1
        try:
            yield "refuse" if self.inflight > self.hard else "overloaded" if self.inflight > self.soft else "ok"
        finally:
            self.inflight -= 1


def _page_body(served: ServedPage) -> bytes:
    try:
        return served.to_json()
    except Exception as exc:  # noqa: BLE001 - a valid request never gets a 5xx: header, no rows
        log.exception("rendering the page of profile %s failed", served.profile.profile_id)
        header = {**served.header(), "personalized": False, "reason": f"internal error: {type(exc).__name__}",
                  "fallback_rung": "none", "degraded": [], "rows": []}
        return orjson.dumps(header)


def _observe(served: ServedPage) -> None:
    overlay_failed = any(stage == OVERLAY and reason == ONLINE_STORE_UNAVAILABLE for stage, reason in served.degraded)
    metrics.record_page(served.personalized, served.reason, {r: len(served.rows.headers) for _, r in served.degraded})
    metrics.record_stages(served.cell, served.times.ms, OVERLAY if overlay_failed else None)


def settle_process(switch_interval_ms: float | None = None) -> None:
    """Once the service is built, in the process that serves it (a Serve replica, bare uvicorn):
    what start-up built (catalog, renderer, libraries) is never scanned by the GC again, and the
    interpreter hands the GIL between threads every ``switch_interval_ms`` (``serving.
    gil_switch_interval_ms``; Python's default, 5 ms, lets a busy page thread hold the event loop
    up to 5 ms at each hand-over of a request)."""
    gc.collect()
    gc.freeze()
    if switch_interval_ms is not None:
        sys.setswitchinterval(switch_interval_ms / 1000.0)


def create_app(service: PathwaysService, *, echo_request_id: bool = True) -> PathwaysApp:
    """The ASGI app serving ``service`` (no Ray here: ``serving.deployment`` wraps it): the FastAPI
    app inside the request-id, metrics and body-size middlewares. ``echo_request_id=False`` behind
    Ray Serve, whose proxy already returns the request's ``X-Request-ID`` (the same id)."""
    config = service.pages.config
    cfg = config.serving
    retry_after_s = config.stream.retry_after_s
    access = AccessControl(config, service.pages.account_of)
    gate = LoadGate(cfg.overload_inflight, cfg.max_inflight)
    builders = ThreadPoolExecutor(max_workers=cfg.page_workers, thread_name_prefix="page")
    app = FastAPI(title="Pathways", description="Personalized home pages", version="1")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return json_response({"error": "invalid request", "problems": _problems(exc.errors())}, 422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return json_response({"error": exc.detail}, exc.status_code)

    @app.exception_handler(AuthError)
    async def _refused(request: Request, exc: AuthError) -> Response:
        return refused_response(exc)

    @app.exception_handler(BadBody)
    async def _bad_body(request: Request, exc: BadBody) -> Response:
        metrics.record_refused(exc.status, "body")
        return json_response({"error": exc.message}, exc.status)

    @app.get(PAGE_PATH)
    async def get_pathways(
        request: Request,
        profile_id: int = Query(..., ge=0, le=INT64_MAX, description="the profile whose page to build"),
        row_count: int = Query(cfg.default_row_count, ge=1, le=cfg.max_row_count, description="rows wanted"),
    ) -> Response:
        _only_known_params(request, PAGE_PARAMS)
        return await page_response(profile_id, row_count, request.headers.get("authorization"),
                                   request.scope.get("state", {}).get("request_id"))

    async def page_response(profile_id: int, row_count: int, authorization: str | None, rid: str | None) -> Response:
        """The page request once its parameters are valid (FastAPI's route and ``PageFastPath``)."""
        try:
            access.check(authorization, PAGES_READ, (profile_id,))
            anonymous = False
        except OwnershipUnknown:  # a valid token, ownership unknowable now: the page that is no one's
            anonymous = True
        with gate.enter() as load:
            if load == "refuse":
                metrics.record_refused(503, "overload")
                return json_response({"error": "overloaded; retry"}, 503, {"Retry-After": str(cfg.retry_after_s)})
            if load == "overloaded":  # the precomputed fallback at once, on the loop (cached, no I/O)
                served = service.pages.get_page(profile_id, row_count, rid, overloaded=True, anonymous=anonymous)
                body = _page_body(served)
            else:
                queued = time.perf_counter()

                def build() -> tuple[ServedPage, bytes]:
                    late = time.perf_counter() - queued > cfg.queue_budget_ms / 1000.0  # waited too long: overloaded
                    page = service.pages.get_page(profile_id, row_count, rid, overloaded=late, anonymous=anonymous)
                    return page, _page_body(page)

                served, body = await asyncio.get_running_loop().run_in_executor(builders, build)
        _observe(served)
        return Response(body, media_type=JSON, headers={"Server-Timing": served.times.header()})

    @app.post("/api/v1/events", status_code=202)
    async def post_events(request: Request) -> Response:
        principal = access.check(request.headers.get("authorization"), EVENTS_WRITE)
        items = as_event_list(await read_body_json(request), cfg.max_events_per_request)
        try:
            events = await run_in_threadpool(_EVENTS.validate_python, items)
        except ValidationError as exc:
            return json_response({"error": "invalid events", "problems": _problems(exc.errors())}, 422)
        check_events(events, principal, cfg.max_profiles_per_request)
        access.may_act_for(principal, (e.profile_id for e in events))
        try:
            result = await run_in_threadpool(service.events.record_events, events)
        except (StreamUnavailable, PageStoreUnavailable, OSError) as exc:
            return _unavailable("events", exc, retry_after_s)
        metrics.EVENTS.labels("accepted").inc(result.accepted)
        metrics.EVENTS.labels("rejected").inc(result.count("rejected"))
        return json_response(_record_body(result), 202 if len(result.results) > result.count("rejected") else 422)

    @app.put("/api/v1/playback/{session_id}/heartbeat", status_code=202)
    async def put_heartbeat(request: Request, session_id: str = Path(..., min_length=1, max_length=128)) -> Response:
        principal = access.check(request.headers.get("authorization"), EVENTS_WRITE)
        payload = await read_body_json(request)
        try:
            beat = HeartbeatIn.model_validate(payload)
        except ValidationError as exc:
            return json_response({"error": "invalid heartbeat", "problems": _problems(exc.errors())}, 422)
        check_events([beat], principal, cfg.max_profiles_per_request)
        access.may_act_for(principal, (beat.profile_id,))
        try:
            result = await run_in_threadpool(service.events.heartbeat, session_id, beat)
        except (StreamUnavailable, PageStoreUnavailable, OSError) as exc:
            return _unavailable("heartbeat", exc, retry_after_s)
        state = result.states.get(beat.profile_id)
        if state is None:
            status = "unknown"
        elif beat.title_id in state.finished:
            status = "finished"
        elif beat.title_id in state.in_progress:
            status = "in_progress"
        else:
            status = "not_in_progress"  # below the continue-watching threshold, or runtime unknown
        body = _record_body(result, {"session_id": session_id, "title_status": status})
        return json_response(body, 202 if len(result.results) > result.count("rejected") else 422)

    @app.get("/healthz")
    async def healthz() -> Response:
        status, body = await run_in_threadpool(service.health)
        return json_response(body, status)

    @app.get("/livez")
    async def livez() -> Response:
        return json_response({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> Response:
        status, body = await run_in_threadpool(service.health)
        ready = status == 200
        return json_response({"ready": ready, "status": body["status"], "snapshot": body["snapshot"]}, 200 if ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        snapshot = service.pages.snapshots.state().snapshot
        metrics.set_snapshot(snapshot.version if snapshot else None, _published_at(snapshot.manifest) if snapshot else None)
        body, content_type = await run_in_threadpool(metrics.render)
        return Response(body, media_type=content_type)

    guarded = BodyLimitMiddleware(app, cfg.max_body_bytes)
    page_route = next(r for r in app.routes if getattr(r, "path", None) == PAGE_PATH)
    fast = PageFastPath(guarded, page_response, page_route, cfg.default_row_count, cfg.max_row_count)
    return PathwaysApp(RequestIdMiddleware(metrics.MetricsMiddleware(fast), echo=echo_request_id), app, gate)


def refused_response(exc: AuthError) -> Response:
    """401 / 403 / 429 for a refused request (counted), with ``WWW-Authenticate`` / ``Retry-After``."""
    metrics.record_refused(exc.status, "rate_limit" if exc.status == 429 else "auth")
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
    if exc.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return json_response({"error": exc.message}, exc.status, headers)


class PageFastPath:
    """``GET /api/v1/pathways`` with plain valid parameters straight to the page handler, past
    FastAPI's routing, dependency solving and middleware stack (~0.25 ms CPU a request, measured);
    every other request (other paths, a missing, repeated, unknown, non-decimal or out-of-range
    parameter: whatever FastAPI would refuse) goes to ``app``, so refusals are FastAPI's, word for
    word. Parameters count as plain when each of ``profile_id`` (required) and ``row_count`` appears
    at most once as 1-19 ASCII digits within its bounds: exactly what FastAPI would accept the same."""

    def __init__(self, app: Any, handler: Any, route: Any, default_row_count: int, max_row_count: int) -> None:
        self.app, self.handler, self.route = app, handler, route
        self.default_row_count, self.max_row_count = default_row_count, max_row_count

    def _plain(self, query: bytes) -> tuple[int, int] | None:
        values: dict[bytes, int] = {}
        for part in query.split(b"&") if query else ():
            key, eq, value = part.partition(b"=")
            if not eq or key in values or key not in (b"profile_id", b"row_count") or not value.isdigit() or len(value) > 19:
                return None
            values[key] = int(value)
        profile_id, row_count = values.get(b"profile_id"), values.get(b"row_count", self.default_row_count)
        if profile_id is None or profile_id > INT64_MAX or not 1 <= row_count <= self.max_row_count:
            return None
        return profile_id, row_count

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        args = None
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PAGE_PATH:
            args = self._plain(scope.get("query_string", b""))
        if args is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # the metrics' route label, as FastAPI sets it
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            response = await self.handler(*args, authorization, scope.get("state", {}).get("request_id"))
        except AuthError as exc:
            response = refused_response(exc)
        await response(scope, receive, send)


class PathwaysApp:
    """The ASGI app ``create_app`` returns: the middlewares around ``fastapi``; ``gate`` counts load."""

    def __init__(self, asgi: Any, fastapi: FastAPI, gate: LoadGate) -> None:
        self.asgi, self.fastapi, self.gate = asgi, fastapi, gate

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.asgi(scope, receive, send)
