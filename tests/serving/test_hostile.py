"""Hostile callers: a table of bad requests with their exact status and message, never a 5xx."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from tests.serving.snapshot_fixtures import ADULT, BR_ADULT, TEST_SECRET, auth_headers, make_config, publish, token

PAGE = "/api/v1/pathways"
EVENTS = "/api/v1/events"
BEAT = "/api/v1/playback/s1/heartbeat"
MIB = 2**20
MEMBER = {"subject": "account:10", "account_id": 10}  # owns ADULT and KID, not BR_ADULT (account 11)


def play(profile_id: int = ADULT, **extra) -> dict:
    return {"event_type": "play", "profile_id": profile_id, "title_id": 3, "fraction_watched": 0.5, **extra}


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("hostile"))
    publish(cfg.snapshots_dir, "v1", cfg)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)
    return cfg, TestClient(create_app(service))


def _tokens(cfg) -> dict[str, dict[str, str]]:
    now = int(time.time())
    claims = {"sub": "account:10", "scope": "pages:read", "account_id": 10, "iat": now, "exp": now + 600,
              "iss": cfg.auth.issuer, "aud": cfg.auth.audience}
    return {
        "service": auth_headers(cfg),
        "member": auth_headers(cfg, **MEMBER),
        "member_pages_only": auth_headers(cfg, scopes=("pages:read",), **MEMBER),
        "member_events_only": auth_headers(cfg, scopes=("events:write",), **MEMBER),
        "expired": bearer(jwt.encode({**claims, "exp": now - 3600}, TEST_SECRET, algorithm="HS256")),
        "other_key": bearer(jwt.encode(claims, "x" * 48, algorithm="HS256")),
        "alg_none": bearer(jwt.encode(claims, None, algorithm="none")),
    }


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _chunks(n: int):
    for _ in range(n):
        yield b" " * 65536


FAR_TS = "9999-12-31T23:59:59-01:00"
OWN = "token may act only on profiles of its own account"
# (name, method, path, token name or raw headers, request kwargs, status, (key, exact value))
CASES = [
    ("no token", "GET", PAGE, None, {"params": {"profile_id": ADULT}}, 401,
     ("error", "missing bearer token (Authorization: Bearer <token>)")),
    ("basic auth", "GET", PAGE, {"Authorization": "Basic dXNlcjpwdw=="}, {"params": {"profile_id": ADULT}}, 401,
     ("error", "the Authorization header must be 'Bearer <token>'")),
    ("garbage token", "GET", PAGE, bearer("not.a.jwt"), {"params": {"profile_id": ADULT}}, 401,
     ("error", "invalid token: Invalid header padding")),
    ("huge token", "GET", PAGE, bearer("a" * 5000), {"params": {"profile_id": ADULT}}, 401,
     ("error", "token longer than 4096 characters")),
    ("expired token", "GET", PAGE, "expired", {"params": {"profile_id": ADULT}}, 401, ("error", "token expired")),
    ("signed with another key", "GET", PAGE, "other_key", {"params": {"profile_id": ADULT}}, 401,
     ("error", "invalid token: Signature verification failed")),
    ("alg none", "GET", PAGE, "alg_none", {"params": {"profile_id": ADULT}}, 401,
     ("error", "invalid token: The specified alg value is not allowed")),
    ("another account's page", "GET", PAGE, "member", {"params": {"profile_id": BR_ADULT}}, 403, ("error", OWN)),
    ("an unknown profile's page", "GET", PAGE, "member", {"params": {"profile_id": 424242}}, 403, ("error", OWN)),
    ("page without pages:read", "GET", PAGE, "member_events_only", {"params": {"profile_id": ADULT}}, 403,
     ("error", "token lacks the 'pages:read' scope")),
    ("events without events:write", "POST", EVENTS, "member_pages_only", {"json": [play()]}, 403,
     ("error", "token lacks the 'events:write' scope")),
    ("events for another account", "POST", EVENTS, "member", {"json": [play(), play(BR_ADULT)]}, 403, ("error", OWN)),
    ("heartbeat for another account", "PUT", BEAT, "member",
     {"json": {"profile_id": BR_ADULT, "title_id": 3, "position_s": 60.0}}, 403, ("error", OWN)),
    ("forged artwork impression", "POST", EVENTS, "service",
     {"json": [{"event_type": "artwork_impression", "profile_id": ADULT, "title_id": 3, "artwork_id": 30,
                "propensity": 1e-9, "policy_version": "v1"}]}, 403,
     ("error", "artwork_impression events are logged by the server from the pages it served; clients may not post them")),
    ("body over 1 MiB", "POST", EVENTS, "service", {"content": b" " * (MIB + 1)}, 413,
     ("error", f"request body larger than {MIB} bytes")),
    ("chunked body over 1 MiB", "POST", EVENTS, "service", {"content": lambda: _chunks(17)}, 413,
     ("error", f"request body larger than {MIB} bytes")),
    ("JSON nested 200,000 deep", "POST", EVENTS, "service", {"content": _deep(200_000)}, 400,
     ("error", "body is nested too deeply")),
    ("not JSON", "POST", EVENTS, "service", {"content": b"event_type=play"}, 400,
     ("error", "body is not JSON: Expecting value: line 1 column 1 (char 0)")),
    ("not UTF-8", "POST", EVENTS, "service", {"content": b'{"a": "\xff\xfe"}'}, 400, ("error", "body is not UTF-8 text")),
    ("NaN", "POST", EVENTS, "service", {"content": b'[{"event_type": "play", "profile_id": NaN}]'}, 400,
     ("error", "body is not JSON: NaN is not a number")),
    ("integer beyond 64 bits", "POST", EVENTS, "service", {"content": b'[{"profile_id": 123456789012345678901234}]'}, 400,
     ("error", "body has an integer out of the 64-bit range: 123456789012345678901234")),
    ("empty body", "POST", EVENTS, "service", {"content": b""}, 400, ("error", "body is empty; expected JSON")),
    ("empty list", "POST", EVENTS, "service", {"json": []}, 422, ("error", "body: an empty list of events")),
    ("too many events", "POST", EVENTS, "service", {"json": [play()] * 1001}, 413,
     ("error", "at most 1000 events per request, got 1001")),
    ("too many profiles", "POST", EVENTS, "service", {"json": [play(p) for p in range(1, 12)]}, 422,
     ("error", "a request may touch at most 10 profiles, got 11")),
    ("timestamp past year 9999 in UTC", "POST", EVENTS, "service", {"json": [play(ts=FAR_TS)]}, 422,
     ("error", f"events[0].ts: {FAR_TS} is outside the representable UTC range")),
    ("heartbeat timestamp past year 9999", "PUT", BEAT, "service",
     {"json": {"profile_id": ADULT, "title_id": 3, "position_s": 1.0, "ts": FAR_TS}}, 422,
     ("error", f"events[0].ts: {FAR_TS} is outside the representable UTC range")),
    ("far-future heartbeat", "PUT", BEAT, "service",
     {"json": {"profile_id": ADULT, "title_id": 3, "position_s": 1.0, "ts": "2999-01-01T00:00:00Z"}}, 422,
     ("events.0.reason", "ts_in_future")),
    ("unknown title", "POST", EVENTS, "service", {"json": [play(title_id=99999)]}, 422,
     ("events.0.reason", "unknown_title_id")),
    ("unknown event field", "POST", EVENTS, "service", {"json": [play(admin=True)]}, 422, ("error", "invalid events")),
    ("string profile id", "POST", EVENTS, "service", {"json": [play("1; DROP TABLE")]}, 422, ("error", "invalid events")),
    ("a bare JSON string", "POST", EVENTS, "service", {"json": "play"}, 422, ("error", "invalid events")),
    ("heartbeat with an extra field", "PUT", BEAT, "service",
     {"json": {"profile_id": ADULT, "title_id": 3, "position_s": 1.0, "seek": 1}}, 422, ("error", "invalid heartbeat")),
    ("negative position", "PUT", BEAT, "service", {"json": {"profile_id": ADULT, "title_id": 3, "position_s": -5}}, 422,
     ("error", "invalid heartbeat")),
    ("session id over 128 chars", "PUT", "/api/v1/playback/" + "s" * 200 + "/heartbeat", "service",
     {"json": {"profile_id": ADULT, "title_id": 3, "position_s": 1.0}}, 422, ("error", "invalid request")),
    ("negative profile id", "GET", PAGE, "service", {"params": {"profile_id": -1}}, 422, ("error", "invalid request")),
    ("unknown query parameter", "GET", PAGE, "service", {"params": {"profile_id": ADULT, "debug": 1}}, 400,
     ("error", "unknown query parameter(s): debug; allowed: profile_id, row_count")),
    ("row_count past the cap", "GET", PAGE, "service", {"params": {"profile_id": ADULT, "row_count": 10**6}}, 422,
     ("error", "invalid request")),
]


def _value(body: dict, key: str):
    for part in key.split("."):
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body


@pytest.mark.parametrize(("name", "method", "path", "auth", "kwargs", "status", "expect"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input_gets_its_exact_4xx(hostile, name, method, path, auth, kwargs, status, expect) -> None:
    cfg, client = hostile
    headers = _tokens(cfg)[auth] if isinstance(auth, str) else (auth or {})
    kwargs = {**kwargs, "content": kwargs["content"]()} if callable(kwargs.get("content")) else kwargs
    r = client.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    key, value = expect
    assert _value(r.json(), key) == value
    assert r.headers["x-request-id"]


def test_the_table_covers_enough_cases_and_never_expects_a_5xx() -> None:
    assert len(CASES) >= 25 and all(400 <= c[5] < 500 for c in CASES)


def test_member_token_reads_and_writes_its_own_profiles(hostile) -> None:
    cfg, client = hostile
    headers = auth_headers(cfg, **MEMBER)
    assert client.get(PAGE, params={"profile_id": ADULT, "row_count": 2}, headers=headers).status_code == 200
    r = client.put(BEAT, json={"profile_id": ADULT, "title_id": 3, "position_s": 60.0}, headers=headers)
    assert r.status_code == 202, r.text


def test_rate_limit_per_subject_answers_429_with_retry_after(tmp_path) -> None:
    cfg = make_config(tmp_path, **{"auth.rate_limit": "3/minute"})
    publish(cfg.snapshots_dir, "v1", cfg)
    client = TestClient(create_app(build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)))
    noisy = auth_headers(cfg, **MEMBER)
    for _ in range(3):
        assert client.get(PAGE, params={"profile_id": ADULT}, headers=noisy).status_code == 200
    r = client.get(PAGE, params={"profile_id": ADULT}, headers=noisy)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json() == {"error": "rate limit of 3 per 1 minute exceeded for this token"}
    assert client.get(PAGE, params={"profile_id": ADULT}, headers=auth_headers(cfg)).status_code == 200  # others unaffected


def test_a_token_never_appears_in_the_response_or_the_logs(hostile, caplog) -> None:
    cfg, client = hostile
    secret_token = token(cfg, **MEMBER)
    r = client.get(PAGE, params={"profile_id": BR_ADULT}, headers=bearer(secret_token))
    assert r.status_code == 403
    assert secret_token not in r.text and secret_token not in caplog.text and TEST_SECRET not in caplog.text
