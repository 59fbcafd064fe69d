"""End to end: the real Ray Serve app (started once for the module) over HTTP."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.serving.snapshot_fixtures import ADULT, RUNTIME_S, auth_headers, make_config, publish

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from serving import deployment

    root = tmp_path_factory.mktemp("serve")
    cfg = make_config(root, **{"serving.num_replicas": 1})  # in-memory playback: one replica holds it
    publish(cfg.snapshots_dir, "v1", cfg)
    base = deployment.start(cfg, port=free_port(), temp_dir=root / "ray", playback="memory")
    try:
        with httpx.Client(base_url=base, timeout=30.0, headers=auth_headers(cfg)) as client:
            yield cfg, client
    finally:
        deployment.stop()


def test_ray_serve_app_serves_pages_heartbeats_and_errors(served):
    cfg, client = served
    import os
    import subprocess

    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    replicas = [int(line.split()[0]) for line in ps.splitlines() if "ServeReplica:pathways" in line]
    assert replicas and {os.getpriority(os.PRIO_PROCESS, pid) for pid in replicas} == {cfg.serving.worker_niceness}
    health = client.get("/healthz").json()
    assert health["snapshot"] == "v1" and health["online_store"] is True and health["status"] == "ok"
    assert client.get("/readyz").status_code == 200 and client.get("/livez").status_code == 200
    assert client.get("/api/v1/pathways", params={"profile_id": ADULT}, headers={"Authorization": ""}).status_code == 401

    page = client.get("/api/v1/pathways", params={"profile_id": ADULT, "row_count": 4}).json()
    assert page["personalized"] is True and page["snapshot"] == "v1" and len(page["rows"]) == 4

    beat = {"profile_id": ADULT, "title_id": 30, "position_s": 0.5 * RUNTIME_S}
    assert client.put("/api/v1/playback/e2e/heartbeat", json=beat).status_code == 202
    page = client.get("/api/v1/pathways", params={"profile_id": ADULT}).json()
    assert page["rows"][0]["titles"][0]["title_id"] == 30
    from features.stream import open_stream

    assert open_stream(cfg).lag(cfg.stream.lake_group) == 1  # in the event stream, for the lake consumer

    unknown = client.get("/api/v1/pathways", params={"profile_id": 424242}).json()
    assert unknown["personalized"] is False and unknown["reason"] == "unknown profile"
    assert client.get("/api/v1/pathways", params={"profile_id": "x"}).status_code == 422
    assert client.get("/api/v1/pathways", params={"profile_id": 1, "nope": 1}).status_code == 400
    r = client.get("/api/v1/pathways", params={"profile_id": ADULT}, headers={"X-Request-ID": "e2e-req-1"})
    assert r.headers["x-request-id"] == "e2e-req-1" and r.json()["request_id"] == "e2e-req-1"
    scrape = client.get("/metrics").text
    assert "pathways_http_requests_total{" in scrape and 'route="/api/v1/pathways"' in scrape
    assert "pathways_stage_seconds_bucket" in scrape and 'pathways_snapshot_info{version="v1"}' in scrape
