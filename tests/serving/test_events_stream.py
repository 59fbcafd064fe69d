"""POST /api/v1/events over the event stream: per-event results, retries, 503 with Retry-After."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from tests.redis_server import free_port
from tests.serving.snapshot_fixtures import ADULT, KID, api_client, make_config, publish


def play(event_id: str | None, profile_id: int = ADULT, title_id: int = 33, **extra) -> dict:
    body = {"event_type": "play", "profile_id": profile_id, "title_id": title_id, "fraction_watched": 0.3, **extra}
    return body if event_id is None else {"event_id": event_id, **body}


def make_client(tmp_path, **overrides) -> tuple[TestClient, object]:
    config = make_config(tmp_path, **overrides)
    publish(config.snapshots_dir, "v1", config)
    service = build_service(config, playback=InMemoryPlaybackStore(), background_reload=False)
    return api_client(service), service


def test_each_event_gets_its_result(tmp_path) -> None:
    client, _ = make_client(tmp_path)
    events = [play("a"), play("b", profile_id=999), play("c", title_id=999),
              play("d", ts="2999-01-01T00:00:00Z"), play(None, profile_id=KID, title_id=3), play("a")]
    r = client.post("/api/v1/events", json=events)
    assert r.status_code == 202, r.text
    body = r.json()
    results = [(e["status"], e["reason"]) for e in body["events"]]
    assert results == [("accepted", None), ("rejected", "unknown_profile_id"), ("rejected", "unknown_title_id"),
                       ("rejected", "ts_in_future"), ("accepted", None), ("duplicate", None)]
    assert body["events"][4]["event_id"]  # server-assigned and returned
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (2, 3, 1)


def test_a_retried_request_is_not_counted_twice(tmp_path) -> None:
    client, service = make_client(tmp_path)
    events = [play("r1"), play("r2", title_id=34)]
    assert client.post("/api/v1/events", json=events).json()["accepted"] == 2
    again = client.post("/api/v1/events", json=events).json()
    assert again["accepted"] == 0 and again["duplicates"] == 2
    assert service.events.stream.lag("lake") == 2


def test_all_rejected_is_422(tmp_path) -> None:
    client, _ = make_client(tmp_path)
    r = client.post("/api/v1/events", json=[play("x", profile_id=999)])
    assert r.status_code == 422 and r.json()["events"][0]["reason"] == "unknown_profile_id"


def test_a_full_stream_answers_503_with_retry_after(tmp_path) -> None:
    client, _ = make_client(tmp_path, **{"stream.max_backlog_events": 3, "stream.retry_after_s": 7})
    assert client.post("/api/v1/events", json=[play("f1"), play("f2")]).status_code == 202
    r = client.post("/api/v1/events", json=[play("f3"), play("f4")])
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    beat = client.put("/api/v1/playback/s/heartbeat", json={"profile_id": ADULT, "title_id": 30, "position_s": 60.0,
                                                             "completed": True})
    assert beat.status_code == 503 and beat.headers["retry-after"] == "7"


def test_a_down_broker_answers_503(tmp_path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client, _ = make_client(tmp_path, **{"stream.backend": "redis", "stream.redis_url": url})
    r = client.post("/api/v1/events", json=[play("down")])
    assert r.status_code == 503 and r.headers["retry-after"] == "1"


def test_a_play_updates_the_because_you_watched_seed(tmp_path) -> None:
    client, service = make_client(tmp_path)
    client.post("/api/v1/events", json=[play("s1", title_id=33), play("s2", title_id=34, ts="2026-11-01T00:00:00Z")])
    assert service.events.seeds.get(ADULT)[:2] == (33, 34)
