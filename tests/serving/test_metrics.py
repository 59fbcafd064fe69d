"""Serving metrics: requests counted by route template and status, pages and degraded rows by reason."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response

from serving.metrics import MetricsMiddleware, record_page, render


def sample(name: str, **labels: str) -> float:
    text, _ = render()
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def client() -> TestClient:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> Response:
        return Response(b"{}", status_code=200 if item_id else 404)

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    return TestClient(MetricsMiddleware(app))


def test_requests_are_counted_by_route_template_and_status() -> None:
    before_ok = sample("pathways_http_requests_total", route="/items/{item_id}", status="200")
    before_404 = sample("pathways_http_requests_total", route="/items/{item_id}", status="404")
    c = client()
    for item_id in (1, 2, 3, 0):
        c.get(f"/items/{item_id}")
    c.get("/nowhere")
    assert sample("pathways_http_requests_total", route="/items/{item_id}", status="200") == before_ok + 3
    assert sample("pathways_http_requests_total", route="/items/{item_id}", status="404") == before_404 + 1
    assert sample("pathways_http_requests_total", route="unmatched", status="404") >= 1
    assert sample("pathways_http_request_seconds_count", route="/items/{item_id}") >= 4
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_pages_and_degraded_rows_by_reason() -> None:
    before = sample("pathways_degraded_rows_total", reason="online store unavailable")
    record_page(True, "degraded", {"online store unavailable": 2})
    record_page(False, "unknown profile")
    assert sample("pathways_degraded_rows_total", reason="online store unavailable") == before + 2
    assert sample("pathways_pages_total", personalized="false", reason="unknown profile") >= 1
