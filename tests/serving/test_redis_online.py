"""The Feast online store on a real redis-server: killed, pages keep their precomputed rows; restarted,
the real-time overlay comes back without restarting the service."""

from __future__ import annotations

import signal
import time

from features.store import FeatureStoreManager
from serving.logic import build_service
from tests.redis_server import needs_redis, start_redis, stop_redis
from tests.serving.snapshot_fixtures import ADULT, RUNTIME_S, api_client, get_page, make_config, publish


@needs_redis
def test_redis_killed_then_restarted(tmp_path) -> None:
    proc, port = start_redis(tmp_path)
    try:
        cfg = make_config(tmp_path, **{"features.online_store": "redis", "features.redis_connection": f"127.0.0.1:{port}"})
        publish(cfg.snapshots_dir, "v1", cfg)
        FeatureStoreManager(cfg.features, cfg.feature_repo_dir).apply()
        service = build_service(cfg, background_reload=False)
        client = api_client(service)
        beat = {"profile_id": ADULT, "title_id": 30, "position_s": 0.5 * RUNTIME_S}
        assert client.put("/api/v1/playback/r1/heartbeat", json=beat).status_code == 202
        page = get_page(client, ADULT)
        assert page["rows"][0]["titles"][0]["title_id"] == 30 and page["degraded"] == []
        state, features = service.pages.playback.get_with_features(ADULT)  # the page's one read: both views
        assert state == service.pages.playback.get(ADULT) and 30 in state.in_progress
        assert features == {"genre_affinity": None}  # profile_stats never materialized here

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        page = get_page(client, ADULT)
        assert page["personalized"] is True and page["reason"] == "online store unavailable"
        assert len(page["degraded"]) == len(page["rows"]) > 0
        assert client.get("/healthz").json()["status"] == "degraded"

        proc, _ = start_redis(tmp_path, port)  # back, empty (no persistence): the overlay works again
        page = get_page(client, ADULT)
        assert page["personalized"] is True and page["reason"] is None and page["degraded"] == []
        assert client.get("/healthz").json()["status"] == "ok"
    finally:
        stop_redis(proc)


@needs_redis
def test_a_stalled_redis_costs_a_page_its_read_timeout_in_the_page_thread(tmp_path) -> None:
    """With Redis, every online read ends within the overlay budget (the client's socket timeout),
    so the page's read runs inline (no hop to the stage pool); a stalled server (CLIENT PAUSE)
    costs a page that timeout, then the precomputed rows, degraded."""
    import redis

    proc, port = start_redis(tmp_path)
    try:
        cfg = make_config(tmp_path, **{"features.online_store": "redis", "features.redis_connection": f"127.0.0.1:{port}",
                                       "serving.personalize_budget_ms": 50.0})
        publish(cfg.snapshots_dir, "v1", cfg)
        FeatureStoreManager(cfg.features, cfg.feature_repo_dir).apply()
        service = build_service(cfg, background_reload=False)
        client = api_client(service)
        assert get_page(client, ADULT)["degraded"] == []
        assert service.pages.playback.bounded_reads and service.pages.playback.client.read_timeout_s == 0.05
        redis.Redis(port=port).execute_command("CLIENT", "PAUSE", "1500", "ALL")
        t0 = time.perf_counter()
        page = get_page(client, ADULT)
        assert time.perf_counter() - t0 < 0.5  # not the 1.5 s pause
        assert page["personalized"] is True and page["reason"] == "online store unavailable"
    finally:
        stop_redis(proc)
