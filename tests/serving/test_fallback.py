"""Every way personalization can fail gives a 200 fallback page that says why."""

from __future__ import annotations

import shutil
import time

from fastapi.testclient import TestClient

from features.history import PlaybackState
from features.schema import KIDS_MAX_MATURITY
from pathways.catalog import Catalog
from pathways.types import ProfileContext
from ranking.rules import violations
from serving.api import create_app
from serving.fallback import fallback_rows
from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from serving.snapshots import load_snapshot
from tests.serving.snapshot_fixtures import ADULT, KID, NO_PAGE, get_page, make_config, publish, title_ids, titles_table


def assert_fallback(page: dict, reason_part: str, rung: str = "cohort") -> None:
    assert page["personalized"] is False
    assert reason_part in page["reason"]
    assert page["fallback_rung"] == rung
    catalog = Catalog.from_table(titles_table())
    prof = page["profile"]
    assert violations(catalog, title_ids(page), prof["region"], prof["max_maturity_level"]) == []


def test_unknown_profile_gets_the_kids_safe_default_region_page(client, config):
    page = get_page(client, 987654321)
    assert_fallback(page, "unknown profile")
    assert page["profile"] == {"profile_id": 987654321, "region": config.serving.default_region,
                               "max_maturity_level": KIDS_MAX_MATURITY, "is_kids": None}
    assert page["rows"] and max(t["maturity_level"] for r in page["rows"] for t in r["titles"]) <= KIDS_MAX_MATURITY


def test_known_profile_without_a_page_gets_its_own_cohort(client):
    page = get_page(client, NO_PAGE)
    assert_fallback(page, "no personalized page")
    assert page["profile"]["max_maturity_level"] == 4 and page["profile"]["region"] == "US"


def test_removed_pointer_or_files_serve_fallback_from_memory(client, config):
    (config.snapshots_dir / "CURRENT").unlink()
    page = get_page(client, ADULT)
    assert_fallback(page, "snapshot missing")
    assert page["rows"] and page["profile"]["max_maturity_level"] == 4  # the profile is still known in memory


def test_removed_snapshot_dir_serves_fallback(client, config):
    shutil.rmtree(config.snapshots_dir / "v1")
    assert_fallback(get_page(client, KID), "snapshot missing")
    assert client.get("/healthz").json()["snapshot_problem"] == "snapshot missing"


def test_no_snapshot_ever_gives_an_empty_page_not_a_5xx(tmp_path):
    cfg = make_config(tmp_path)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)
    page = get_page(TestClient(create_app(service)), ADULT)
    assert page["personalized"] is False and page["reason"] == "snapshot missing"
    assert page["rows"] == [] and page["fallback_rung"] == "none" and page["snapshot"] is None


def test_online_store_down_falls_back(client, store):
    store.available = False
    assert_fallback(get_page(client, ADULT), "online store unavailable")


class _SlowStore(InMemoryPlaybackStore):
    def get(self, profile_id: int) -> PlaybackState:
        time.sleep(0.5)
        return super().get(profile_id)


class _BrokenStore(InMemoryPlaybackStore):
    def get(self, profile_id: int) -> PlaybackState:
        raise RuntimeError("boom")


def test_personalization_over_budget_falls_back_within_the_budget(tmp_path):
    cfg = make_config(tmp_path, **{"serving.personalize_budget_ms": 50.0})
    publish(cfg.snapshots_dir, "v1", cfg)
    client = TestClient(create_app(build_service(cfg, playback=_SlowStore(), background_reload=False)))
    t0 = time.perf_counter()
    page = get_page(client, ADULT)
    assert time.perf_counter() - t0 < 0.4
    assert_fallback(page, "over budget")


def test_exception_in_personalization_falls_back(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    client = TestClient(create_app(build_service(cfg, playback=_BrokenStore(), background_reload=False)))
    assert_fallback(get_page(client, ADULT), "personalization failed: RuntimeError")


def test_page_built_for_another_cell_is_not_served(tmp_path):
    cfg = make_config(tmp_path, **{"experiment.cells": {"control": 0.0, "treatment": 1.0}})
    publish(cfg.snapshots_dir, "v1", make_config(tmp_path))  # pages built under the default cells
    client = TestClient(create_app(build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)))
    page = get_page(client, ADULT)
    assert_fallback(page, "page built for cell")
    assert page["cell"] == "treatment"


def _ids(rows) -> list[int]:
    return rows.title_ids.tolist()


def _ladder(snap, region: str, level: int, finished: frozenset[int] = frozenset(), row_length: int = 8, row_count: int = 40):
    profile = ProfileContext(-1, region, level, finished=finished, known=False)
    return fallback_rows(snap, profile, row_count=row_count, row_length=row_length, dedupe_top_rows=10)


def test_ladder_goes_global_then_catalog(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg, fallback_keys=[("BR", 0), ("US", 2)])
    snap = load_snapshot(cfg.snapshots_dir / "v1")
    catalog = snap.catalog
    # US at level 3: no (US, 3) page; (US, 2) is the nearest lower level of the same region.
    rows, rung = _ladder(snap, "US", 3)
    assert rung == "global" and len(rows)
    # Kids in US: (US, 2) is too mature, (BR, 0) is another region: still usable after the rules.
    kids, rung = _ladder(snap, "US", 1)
    assert rung == "global" and _ids(kids) and violations(catalog, _ids(kids), "US", 1) == []
    # A region no fallback page and no title can serve (nothing licensed in GB): empty, rung "none".
    gb, rung = _ladder(snap, "GB", 4)
    assert len(gb) == 0 and rung == "none"


def test_catalog_rung_when_no_fallback_pages(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg, fallback_keys=[])
    snap = load_snapshot(cfg.snapshots_dir / "v1")
    rows, rung = _ladder(snap, "US", 1, frozenset({1}), row_count=3)
    ids = _ids(rows)
    assert rung == "catalog" and ids
    assert violations(snap.catalog, ids, "US", 1, {1}) == []
    assert len(rows) <= 3 and len(ids) == len(set(ids))


def test_a_failing_renderer_still_answers_200(client, service, monkeypatch):
    snapshot = service.pages.snapshots.state().snapshot

    def broken(*args, **kwargs):
        raise RuntimeError("render bug")

    monkeypatch.setattr(snapshot.renderer, "rows_json", broken)
    page = get_page(client, ADULT)
    assert page["personalized"] is False and page["reason"] == "internal error: RuntimeError" and page["rows"] == []


def test_an_exception_anywhere_in_get_page_gives_an_empty_200_page(client, service, monkeypatch):
    def broken():
        raise OSError("disk gone")

    monkeypatch.setattr(service.pages.snapshots, "state", broken)
    page = get_page(client, ADULT)
    assert page["personalized"] is False and page["reason"] == "internal error: OSError" and page["rows"] == []
