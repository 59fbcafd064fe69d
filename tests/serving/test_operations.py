"""What on-call sees: honest health, readiness, metrics, request ids; dev tokens; server-logged impressions."""

from __future__ import annotations

import time

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from features.stream.impressions import impressions_table
from pathways.config import PathwaysConfig
from serving.access import AccessControl, dev_secret_path, dev_token, with_service
from serving.impressions import ImpressionLog
from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from tests.serving.snapshot_fixtures import ADULT, KID, api_client, get_page, make_config, publish


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_health_is_ok_then_degraded_then_unavailable(client, store, config):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["problems"] == []
    assert client.get("/readyz").json() == {"ready": True, "status": "ok", "snapshot": "v1"}
    store.available = False
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "degraded" and r.json()["problems"] == ["online store unavailable"]


def test_no_snapshot_is_unavailable_and_not_ready(tmp_path):
    cfg = make_config(tmp_path)
    client = api_client(build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False))
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert client.get("/readyz").status_code == 503 and client.get("/livez").status_code == 200
    assert client.get("/api/v1/pathways", params={"profile_id": ADULT}).status_code == 200  # still a (fallback) page


def test_request_id_is_echoed_or_made_and_in_the_page(client):
    r = client.get("/api/v1/pathways", params={"profile_id": ADULT, "row_count": 1}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and r.json()["request_id"] == "abc-123"
    r = client.get("/api/v1/pathways", params={"profile_id": ADULT, "row_count": 1}, headers={"X-Request-ID": "bad id\n"})
    assert len(r.headers["x-request-id"]) == 32 and r.json()["request_id"] == r.headers["x-request-id"]
    assert "overlay;dur=" in r.headers["server-timing"]


def test_metrics_count_pages_stages_refusals_and_the_snapshot(client, store):
    before = client.get("/metrics").text
    get_page(client, ADULT)
    store.available = False
    get_page(client, ADULT)
    client.get("/api/v1/pathways", params={"profile_id": ADULT}, headers={"Authorization": ""})
    text = client.get("/metrics").text
    delta = {k: sample(text, *k[:1], **dict(k[1:])) - sample(before, *k[:1], **dict(k[1:])) for k in [
        ("pathways_pages_total", ("personalized", "true"), ("reason", "online store unavailable")),
        ("pathways_online_store_errors_total", ("stage", "overlay")),
        ("pathways_refused_total", ("status", "401"), ("reason", "auth")),
        ("pathways_stage_seconds_count", ("stage", "snapshot_read")),
    ]}
    assert list(delta.values()) == [1.0, 1.0, 1.0, 2.0]
    assert sample(text, "pathways_snapshot_info", version="v1") == 1.0
    assert sample(text, "pathways_snapshot_age_seconds") >= 0.0


def test_dev_token_creates_a_private_key_and_verifies(tmp_path):
    cfg = with_service(PathwaysConfig(data_dir=tmp_path), "demo")
    tok = dev_token(cfg, "demo", ["pages:read"])
    assert dev_secret_path(cfg).stat().st_mode & 0o777 == 0o600
    assert tok not in dev_secret_path(cfg).read_text()
    principal = AccessControl(cfg, lambda pid: None).check(f"Bearer {tok}", "pages:read", [123])
    assert principal.service and cfg.auth.service_subjects == ("demo",)


def test_auth_disabled_lets_anyone_in(tmp_path):
    cfg = make_config(tmp_path, **{"auth.enabled": False})
    publish(cfg.snapshots_dir, "v1", cfg)
    client = api_client(build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False))
    assert client.get("/api/v1/pathways", params={"profile_id": ADULT}, headers={"Authorization": ""}).status_code == 200


class _Policy:
    version = "pol-7"

    def select_page(self, profile_id, title_ids, positions, request_id, profile_features=None):
        n = len(title_ids)
        return np.ones(n, np.int64), np.full(n, 0.25)


class _Stream:
    def __init__(self) -> None:
        self.appended: list[dict] = []

    def append(self, events):
        self.appended.extend(events)
        return []


def test_impressions_are_logged_by_the_server_from_what_it_chose(tmp_path):
    cfg = make_config(tmp_path, **{"serving.impression_rows_logged": 2})
    publish(cfg.snapshots_dir, "v1", cfg)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), artwork=_Policy(), background_reload=False)
    stream = _Stream()
    service.pages.impressions = ImpressionLog(stream, 2)
    page = get_page(api_client(service), KID, row_count=3)
    shown = [(t["title_id"], t["artwork_id"], t["artwork_propensity"]) for r in page["rows"][:2] for t in r["titles"]]
    deadline = time.monotonic() + 5.0
    while not stream.appended and time.monotonic() < deadline:  # the log's thread appends in the background
        service.pages.impressions.flush(timeout_s=0.1)
    assert len(stream.appended) == 1 and stream.appended[0]["event_id"] == page["request_id"]  # one entry per page
    events = impressions_table(stream.appended).to_pylist()  # as the lake consumer expands it
    logged = [(e["title_id"], e["artwork_id"], e["propensity"]) for e in events]
    assert sorted(logged) == sorted(shown) and len(logged) == len(shown) and all(p == 0.25 for _, _, p in logged)
    assert {e["policy_version"] for e in events} == {"pol-7"}
    assert {e["event_type"] for e in events} == {"artwork_impression"}
    assert all(e["event_id"] == f"{page['request_id']}:{e['title_id']}" for e in events)


def test_a_bad_snapshot_at_start_up_falls_back_to_the_last_good_version(tmp_path):
    from pathways.snapshot import switch_current

    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    publish(cfg.snapshots_dir, "v2", cfg)
    (cfg.snapshots_dir / "v2" / "titles.parquet").write_bytes(b"not parquet")  # v2 is live and broken
    service = build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)
    client = api_client(service)
    page = get_page(client, ADULT)
    assert page["personalized"] is True and page["snapshot"] == "v1"
    health = client.get("/healthz").json()
    assert health["status"] == "degraded" and health["snapshot"] == "v1"
    assert health["problems"] == ["serving v1; CURRENT names v2 (failed to load, or loading)"]
    switch_current(cfg.snapshots_dir, "v1")  # an operator rolls back: healthy again
    assert client.get("/healthz").json()["status"] == "ok"


def test_a_bad_new_snapshot_keeps_the_live_one(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)
    publish(cfg.snapshots_dir, "v2", cfg)
    (cfg.snapshots_dir / "v2" / "titles.parquet").write_bytes(b"not parquet")
    assert get_page(api_client(service), ADULT)["snapshot"] == "v1"
