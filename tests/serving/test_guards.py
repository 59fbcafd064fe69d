"""Request guards: body cap before parsing (declared and streamed), request ids, JSON that cannot hurt."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse

from serving.guards import BadBody, BodyLimitMiddleware, RequestIdLogFilter, RequestIdMiddleware, parse_json

PARSED: list[int] = []


def app(max_bytes: int = 100) -> TestClient:
    api = FastAPI()

    @api.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        raw = await request.body()
        PARSED.append(len(raw))
        logging.getLogger("test.guards").warning("handled")
        return JSONResponse({"n": len(raw), "rid": request.scope["state"]["request_id"]})

    return TestClient(RequestIdMiddleware(BodyLimitMiddleware(api, max_bytes)))


def test_declared_length_over_the_cap_is_413_before_the_handler_runs() -> None:
    PARSED.clear()
    r = app().post("/echo", content=b"x" * 101)
    assert (r.status_code, r.json()) == (413, {"error": "request body larger than 100 bytes"})
    assert PARSED == []


def test_streamed_body_is_cut_off_at_the_cap() -> None:
    PARSED.clear()

    def chunks():  # no Content-Length: chunked transfer
        for _ in range(5):
            yield b"y" * 40

    r = app().post("/echo", content=chunks())
    assert (r.status_code, r.json()["error"]) == (413, "request body larger than 100 bytes")
    assert PARSED == []


def test_within_the_cap_passes_and_gets_a_request_id() -> None:
    r = app().post("/echo", content=b"z" * 100)
    assert r.status_code == 200 and r.json()["n"] == 100
    rid = r.headers["x-request-id"]
    assert len(rid) == 32 and r.json()["rid"] == rid


@pytest.mark.parametrize(("given", "kept"), [("abc-123", True), ("a" * 129, False), ("bad id\n", False)])
def test_request_id_is_echoed_only_when_valid(given: str, kept: bool) -> None:
    r = app().post("/echo", content=b"{}", headers={"x-request-id": given})
    assert (r.headers["x-request-id"] == given) is kept


def test_request_id_reaches_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.guards")
    flt = RequestIdLogFilter()
    logger.addFilter(flt)
    try:
        with caplog.at_level(logging.WARNING, logger="test.guards"):
            app().post("/echo", content=b"{}", headers={"x-request-id": "rid-42"})
    finally:
        logger.removeFilter(flt)
    assert [getattr(r, "request_id", None) for r in caplog.records] == ["rid-42"]


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "body is empty; expected JSON"),
    (b"   ", "body is empty; expected JSON"),
    (b"{", "body is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (b"\xff\xfe", "body is not UTF-8 text"),
    (b"[" * 200_000 + b"]" * 200_000, "body is nested too deeply"),
    (b'{"a": NaN}', "body is not JSON: NaN is not a number"),
    (b'{"a": -Infinity}', "body is not JSON: -Infinity is not a number"),
    (b'{"a": 99999999999999999999999}', "body has an integer out of the 64-bit range: 99999999999999999999999"),
    (b'{"a": 1e999999}', None),  # float overflow parses to inf in json; pydantic (allow_inf_nan=False) refuses it
])
def test_parse_json_turns_every_failure_into_a_400(raw: bytes, message: str | None) -> None:
    if message is None:
        assert parse_json(raw) == {"a": float("inf")}
        return
    with pytest.raises(BadBody) as err:
        parse_json(raw)
    assert (err.value.status, err.value.message) == (400, message)


def test_parse_json_keeps_valid_bodies() -> None:
    assert parse_json(b'[{"profile_id": 9223372036854775807, "x": 1.5, "s": "\\u00e9"}]') == [
        {"profile_id": 2**63 - 1, "x": 1.5, "s": "é"}]


def test_json_logs_carry_the_request_id() -> None:
    import io
    import json as json_module

    from serving.guards import JsonLogFormatter, request_id_var

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    handler.addFilter(RequestIdLogFilter())
    logger = logging.getLogger("test.guards.json")
    logger.addHandler(handler)
    token = request_id_var.set("rid-42")
    try:
        logger.warning("page for %s degraded", 7)
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    entry = json_module.loads(stream.getvalue())
    assert entry["request_id"] == "rid-42" and entry["message"] == "page for 7 degraded" and entry["level"] == "WARNING"
