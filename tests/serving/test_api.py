"""GET /api/v1/pathways over the FastAPI app (TestClient): page shape, bad parameters, rules."""

from __future__ import annotations

import pytest

from experiments.allocation import assign_cell
from pathways.catalog import Catalog
from ranking.rules import violations
from tests.serving.snapshot_fixtures import ADULT, BR_ADULT, BR_ONLY, KID, NO_PAGE, get_page, title_ids, titles_table


def test_personalized_page_has_the_documented_shape(client, config):
    page = get_page(client, ADULT, row_count=5)
    assert page["personalized"] is True and page["reason"] is None and page["fallback_rung"] is None
    assert page["profile"] == {"profile_id": ADULT, "region": "US", "max_maturity_level": 4, "is_kids": False}
    assert page["cell"] == assign_cell(ADULT, config.experiment)
    assert page["snapshot"] == "v1"
    assert 1 <= len(page["rows"]) <= 5
    row = page["rows"][1]
    assert set(row) == {"row_id", "title", "source", "evidence", "titles"}
    t = row["titles"][0]
    assert isinstance(t["maturity_level"], int)
    assert t["artwork_id"] == 10 * t["title_id"] and t["artwork_propensity"] == 1.0  # default artwork
    assert page["rows"][0]["source"] == "continue_watching"  # the snapshot's row, kept pinned


def test_row_count_defaults_to_config_and_is_respected(client):
    assert len(get_page(client, ADULT)["rows"]) <= 40
    assert len(get_page(client, ADULT, row_count=2)["rows"]) == 2


BAD_PARAMS = [
    ("", 422, "profile_id"),
    ("profile_id=abc", 422, "profile_id"),
    ("profile_id=1.5", 422, "profile_id"),
    ("profile_id=-1", 422, "profile_id"),
    ("profile_id=99999999999999999999", 422, "profile_id"),
    ("profile_id=1&row_count=0", 422, "row_count"),
    ("profile_id=1&row_count=101", 422, "row_count"),
    ("profile_id=1&row_count=two", 422, "row_count"),
    ("profile_id=1&row_count=", 422, "row_count"),
    ("profile_id=1&rows=3", 400, "rows"),
    ("profile_id=1&profile_id=2", 400, "profile_id"),
]


@pytest.mark.parametrize(("query", "status", "field"), BAD_PARAMS)
def test_bad_parameters_get_a_4xx_naming_the_parameter(client, query, status, field):
    r = client.get(f"/api/v1/pathways?{query}")
    assert r.status_code == status, r.text
    assert field in r.text


@pytest.mark.parametrize("profile_id", [ADULT, KID, BR_ADULT, NO_PAGE, 12345])
def test_no_title_served_breaks_a_hard_rule(client, profile_id):
    catalog = Catalog.from_table(titles_table())
    page = get_page(client, profile_id)
    ids = title_ids(page)
    assert ids, "every profile gets some titles"
    prof = page["profile"]
    assert violations(catalog, ids, prof["region"], prof["max_maturity_level"]) == []
    for row in page["rows"]:
        for t in row["titles"]:
            assert t["maturity_level"] <= prof["max_maturity_level"]


def test_stored_forbidden_titles_are_filtered_out(client):
    # The stored kids page holds mature titles and the BR-only title; the US pages hold BR_ONLY.
    kid = get_page(client, KID)
    assert 5 not in title_ids(kid) and 40 not in title_ids(kid) and BR_ONLY not in title_ids(kid)
    assert BR_ONLY not in title_ids(get_page(client, ADULT))
    assert BR_ONLY in title_ids(get_page(client, BR_ADULT))  # licensed there: not over-filtered


def test_no_title_repeats_in_the_first_ten_rows_nor_within_a_row(client):
    client.put("/api/v1/playback/s/heartbeat", json={"profile_id": ADULT, "title_id": 16, "position_s": 3000})
    page = get_page(client, ADULT)
    top = title_ids(page, 10)
    assert len(top) == len(set(top))
    for row in page["rows"]:
        ids = [t["title_id"] for t in row["titles"]]
        assert len(ids) == len(set(ids))


def test_healthz_reports_snapshot_and_online_store(client, store):
    body = client.get("/healthz").json()
    assert body["snapshot"] == "v1" and body["online_store"] is True
    store.available = False
    body = client.get("/healthz")
    assert body.status_code == 200 and body.json()["online_store"] is False


FAST_PATH_QUERIES = [
    "profile_id=1", "profile_id=1&row_count=3", "row_count=2&profile_id=2", "profile_id=007&row_count=40",
    "profile_id=12345", "profile_id=0", f"profile_id={2**63 - 1}",  # plain: served past FastAPI
    *[q for q, _, _ in BAD_PARAMS], f"profile_id={2**63}", "profile_id=1&", "profile_id=%31", "profile_id=+1",
    "profile_id=1&row_count=0040", "profile_id=00000000000000000001",  # anything else: FastAPI's own answer
]


@pytest.mark.parametrize("query", FAST_PATH_QUERIES)
@pytest.mark.parametrize("auth", ["service", "none", "bad"])
def test_the_page_fast_path_answers_exactly_as_fastapi(service, query, auth):
    """``PageFastPath`` takes plain page requests past FastAPI: for every query (plain or not) and
    token the status, the body (but its request id) and the headers that matter are FastAPI's."""
    from fastapi.testclient import TestClient

    from serving.api import create_app
    from tests.serving.snapshot_fixtures import auth_headers

    headers = {"service": auth_headers(service.pages.config), "none": {}, "bad": {"Authorization": "Bearer nope"}}[auth]
    app = create_app(service)
    fast, slow = TestClient(app, headers=headers), TestClient(app.fastapi, headers=headers)  # app.fastapi: no fast path
    a, b = fast.get(f"/api/v1/pathways?{query}"), slow.get(f"/api/v1/pathways?{query}")
    assert a.status_code == b.status_code, (a.text, b.text)
    body_a, body_b = a.json(), b.json()
    body_a.pop("request_id", None), body_b.pop("request_id", None)
    assert body_a == body_b
    for name in ("content-type", "www-authenticate", "retry-after"):
        assert a.headers.get(name) == b.headers.get(name)


def test_the_fast_path_is_taken_and_labels_the_route(service, monkeypatch):
    from fastapi.testclient import TestClient

    from serving import api
    from serving.api import create_app
    from tests.serving.snapshot_fixtures import auth_headers

    taken: list[tuple[int, int]] = []
    plain = api.PageFastPath._plain
    monkeypatch.setattr(api.PageFastPath, "_plain", lambda self, q: taken.append(plain(self, q)) or taken[-1])
    client = TestClient(create_app(service), headers=auth_headers(service.pages.config))
    assert client.get("/api/v1/pathways?profile_id=1&row_count=3").status_code == 200
    assert client.get("/api/v1/pathways?profile_id=1&rows=3").status_code == 400
    assert taken == [(1, 3), None]
    text = client.get("/metrics").text
    assert 'route="/api/v1/pathways"' in text and 'status="200"' in text
