"""The HTTP layer: a FastAPI app over ``PathwaysService`` (``create_app(service)``).

Endpoints (JSON in and out; responses are bytes from ``json.dumps`` or, for pages, from
``ServedPage.to_json`` (pre-encoded title fragments), never ``jsonable_encoder``, which costs
~10x more on a 40 x 40 page):

- ``GET /api/v1/pathways?profile_id=&row_count=``: the page; 200 for every valid request
  (fallback pages say ``personalized: false`` and why); 422 for a missing, non-integer or
  out-of-range parameter, 400 for an unknown or repeated one.
- ``POST /api/v1/events``: one event or a list (``EventIn``); 202 once the event stream has them,
  with a result per event (accepted, duplicate, or rejected with the ingest rule it failed; 422
  when every event is rejected); 422 for events that do not parse (nothing of the request is
  appended), 400 for a body that is not JSON, 413 for more than ``MAX_EVENTS_PER_REQUEST``, 503
  with ``Retry-After`` when the stream is full or its broker is down.
- ``PUT /api/v1/playback/{session_id}/heartbeat``: ``HeartbeatIn``; 202 with the title's status.
- ``GET /healthz``: the live snapshot version and whether the online store answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from features.stream import StreamUnavailable
from serving.events import INT64_MAX, MAX_EVENTS_PER_REQUEST, EventIn, HeartbeatIn, RecordResult
from serving.logic import PathwaysService

log = logging.getLogger(__name__)

PAGE_PARAMS = frozenset({"profile_id", "row_count"})
_EVENTS = TypeAdapter(list[EventIn])


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), status_code=status_code, media_type="application/json")


def _problems(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as [{"field": "query.row_count", "message": ...}]."""
    return [{"field": ".".join(str(p) for p in e.get("loc", ())) or "body", "message": str(e.get("msg", ""))} for e in errors]


def _only_known_params(allowed: frozenset[str]):
    def check(request: Request) -> None:
        keys = [k for k, _ in request.query_params.multi_items()]
        unknown = sorted(set(keys) - allowed)
        if unknown:
            raise HTTPException(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise HTTPException(400, f"query parameter(s) given more than once: {', '.join(repeated)}")

    return check


def _request_id(request: Request) -> str | None:
    rid = request.headers.get("x-request-id")
    return rid if rid and len(rid) <= 128 else None


def _record_body(result: RecordResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**result.to_body(), **(extra or {})}


def _unavailable(what: str, exc: Exception, retry_after_s: int) -> Response:
    """503 with Retry-After: the stream is full or its broker is down; nothing was appended."""
    log.error("cannot append %s: %s", what, exc)
    body = json.dumps({"error": f"{what} could not be stored ({type(exc).__name__}); retry"}).encode()
    return Response(body, status_code=503, media_type="application/json", headers={"Retry-After": str(retry_after_s)})


def create_app(service: PathwaysService) -> FastAPI:
    """The FastAPI app serving ``service`` (no Ray here: ``serving.deployment`` wraps it)."""
    cfg = service.pages.config.serving
    retry_after_s = service.pages.config.stream.retry_after_s
    app = FastAPI(title="Pathways", description="Personalized home pages", version="1")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return json_response({"error": "invalid request", "problems": _problems(exc.errors())}, 422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return json_response({"error": exc.detail}, exc.status_code)

    @app.get("/api/v1/pathways", dependencies=[Depends(_only_known_params(PAGE_PARAMS))])
    def get_pathways(
        request: Request,
        profile_id: int = Query(..., ge=0, le=INT64_MAX, description="the profile whose page to build"),
        row_count: int = Query(cfg.default_row_count, ge=1, le=cfg.max_row_count, description="rows wanted"),
    ) -> Response:
        served = service.pages.get_page(profile_id, row_count, _request_id(request))
        try:
            body = served.to_json()
        except Exception as exc:  # noqa: BLE001 - a valid request never gets a 5xx: header, no rows
            log.exception("rendering the page of profile %s failed", profile_id)
            header = {**served.header(), "personalized": False, "reason": f"internal error: {type(exc).__name__}",
                      "fallback_rung": "none", "rows": []}
            body = json.dumps(header).encode()
        return Response(body, media_type="application/json")

    @app.post("/api/v1/events", status_code=202)
    async def post_events(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"body is not JSON: {exc}") from None
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            raise HTTPException(422, "body: an empty list of events")
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise HTTPException(413, f"at most {MAX_EVENTS_PER_REQUEST} events per request, got {len(items)}")
        try:
            events = _EVENTS.validate_python(items)
        except ValidationError as exc:
            return json_response({"error": "invalid events", "problems": _problems(exc.errors())}, 422)
        try:
            result = await run_in_threadpool(service.events.record_events, events)
        except (StreamUnavailable, OSError) as exc:
            return _unavailable("events", exc, retry_after_s)
        return json_response(_record_body(result), 202 if len(result.results) > result.count("rejected") else 422)

    @app.put("/api/v1/playback/{session_id}/heartbeat", status_code=202)
    def put_heartbeat(beat: HeartbeatIn, session_id: str = Path(..., min_length=1, max_length=128)) -> Response:
        try:
            result = service.events.heartbeat(session_id, beat)
        except (StreamUnavailable, OSError) as exc:
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
    def healthz() -> Response:
        return json_response(service.health())

    return app
