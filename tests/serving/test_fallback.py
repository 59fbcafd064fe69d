"""Every way personalization can fail gives a 200 fallback page that says why."""

from __future__ import annotations

import shutil
import sys
import threading
import time

import numpy as np
import pytest

from features.history import PlaybackState
from features.schema import KIDS_MAX_MATURITY
from pathways.catalog import Catalog
from pathways.types import ProfileContext
from ranking.rules import violations
from serving.fallback import fallback_rows
from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from serving.snapshots import SNAPSHOT_DETACHED, load_snapshot
from tests.serving.snapshot_fixtures import (
    ADULT,
    KID,
    NO_PAGE,
    api_client,
    get_page,
    make_config,
    publish,
    title_ids,
    titles_table,
)


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


def test_removed_pointer_keeps_serving_the_loaded_snapshot(client, config):
    before = get_page(client, ADULT)
    (config.snapshots_dir / "CURRENT").unlink()
    page = get_page(client, ADULT)
    assert page["personalized"] is True and page["reason"] is None and page["rows"] == before["rows"]
    health = client.get("/healthz").json()
    assert health["status"] == "degraded" and health["snapshot_problem"] == SNAPSHOT_DETACHED


def test_removed_snapshot_dir_keeps_serving_its_pages_from_any_thread(client, service, config):
    before = {pid: get_page(client, pid) for pid in (ADULT, KID)}
    shutil.rmtree(config.snapshots_dir / "v1")
    after: dict[int, dict] = {}
    reader = threading.Thread(target=lambda: after.update({pid: get_page(client, pid) for pid in (ADULT, KID)}))
    reader.start()  # a thread that never read a page before the files went
    reader.join()
    for pid in (ADULT, KID):
        assert after[pid]["personalized"] is True and after[pid]["rows"] == before[pid]["rows"], pid
    assert client.get("/healthz").json()["snapshot_problem"] == SNAPSHOT_DETACHED


def test_snapshot_back_on_disk_clears_the_problem(client, service, config):
    gone = config.snapshots_dir / "v1.gone"
    (config.snapshots_dir / "v1").rename(gone)
    assert service.pages.snapshots.refresh().problem == SNAPSHOT_DETACHED
    gone.rename(config.snapshots_dir / "v1")
    assert service.pages.snapshots.refresh().problem is None
    assert get_page(client, ADULT)["personalized"] is True


def test_no_snapshot_ever_gives_an_empty_page_not_a_5xx(tmp_path):
    cfg = make_config(tmp_path)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)
    page = get_page(api_client(service), ADULT)
    assert page["personalized"] is False and page["reason"] == "snapshot missing"
    assert page["rows"] == [] and page["fallback_rung"] == "none" and page["snapshot"] is None


def assert_precomputed_degraded(page: dict, reason_part: str) -> None:
    """The precomputed personalized page, every row listed as degraded with the reason."""
    assert page["personalized"] is True and page["fallback_rung"] is None
    assert reason_part in page["reason"]
    assert page["rows"] and len(page["degraded"]) == len(page["rows"])
    assert [d["row_id"] for d in page["degraded"]] == [r["row_id"] for r in page["rows"]]
    assert all(d["rung"] == "personalized" and reason_part in d["reason"] for d in page["degraded"])
    catalog = Catalog.from_table(titles_table())
    prof = page["profile"]
    assert violations(catalog, title_ids(page), prof["region"], prof["max_maturity_level"]) == []


def test_online_store_down_costs_only_the_overlay(client, store):
    healthy = get_page(client, ADULT)
    assert healthy["degraded"] == []
    store.available = False
    page = get_page(client, ADULT)
    assert_precomputed_degraded(page, "online store unavailable")
    assert page["reason"] == "online store unavailable"
    assert [r["row_id"] for r in page["rows"]] == [r["row_id"] for r in healthy["rows"]]  # the same precomputed rows


class _SlowStore(InMemoryPlaybackStore):
    def get(self, profile_id: int) -> PlaybackState:
        time.sleep(0.5)
        return super().get(profile_id)


class _BrokenStore(InMemoryPlaybackStore):
    def get(self, profile_id: int) -> PlaybackState:
        raise RuntimeError("boom")


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"serving.personalize_budget_ms": 50.0}, "real-time overlay over budget (50 ms)"),  # the stage's own budget
    ({"serving.deadline_ms": 60.0}, "real-time overlay over budget"),  # stage budgets 2 s: the deadline binds
])
def test_a_slow_overlay_serves_the_precomputed_page_within_the_budget(tmp_path, overrides, reason):
    cfg = make_config(tmp_path, **overrides)
    publish(cfg.snapshots_dir, "v1", cfg)
    client = api_client(build_service(cfg, playback=_SlowStore(), background_reload=False))
    t0 = time.perf_counter()
    page = get_page(client, ADULT)
    assert time.perf_counter() - t0 < 0.4
    assert_precomputed_degraded(page, reason)


def test_exception_in_the_overlay_serves_the_precomputed_page(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    client = api_client(build_service(cfg, playback=_BrokenStore(), background_reload=False))
    assert_precomputed_degraded(get_page(client, ADULT), "real-time overlay failed: RuntimeError")


def test_a_slow_page_store_read_falls_back_to_the_cohort_rows(tmp_path, monkeypatch):
    cfg = make_config(tmp_path, **{"serving.snapshot_read_budget_ms": 50.0})
    publish(cfg.snapshots_dir, "v1", cfg)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)
    snapshot = service.pages.snapshots.state().snapshot
    read = snapshot.pages.get

    def slow(profile_id, default=None):
        time.sleep(0.5)
        return read(profile_id, default)

    monkeypatch.setattr(snapshot.pages, "get", slow)
    monkeypatch.setitem(snapshot.manifest, "page_store", {"backend": "redis"})  # remote: read within the budget
    page = get_page(api_client(service), ADULT)
    assert_fallback(page, "snapshot read over budget (50 ms)")
    assert {d["rung"] for d in page["degraded"]} == {"cohort"} and len(page["degraded"]) == len(page["rows"])


def test_an_unreadable_page_store_falls_back_to_the_cohort_rows(tmp_path, monkeypatch):
    from pathways.pagestore import PageStoreUnavailable

    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False)
    snapshot = service.pages.snapshots.state().snapshot

    def broken(profile_id, default=None):
        raise PageStoreUnavailable("pages.sqlite is gone")

    monkeypatch.setattr(snapshot.pages, "get", broken)
    assert_fallback(get_page(api_client(service), ADULT), "snapshot read failed: PageStoreUnavailable")


def test_a_slow_artwork_policy_degrades_only_the_artwork(tmp_path):
    class SlowPolicy:
        version = "slow-1"

        def select_page(self, profile_id, title_ids, positions, request_id, profile_features=None):
            time.sleep(0.5)
            n = len(title_ids)
            return np.ones(n, np.int64), np.full(n, 0.5)

    cfg = make_config(tmp_path, **{"serving.artwork_budget_ms": 50.0})
    publish(cfg.snapshots_dir, "v1", cfg)
    client = api_client(build_service(cfg, playback=InMemoryPlaybackStore(), artwork=SlowPolicy(), background_reload=False))
    page = get_page(client, ADULT)
    assert page["personalized"] is True and page["reason"] == "artwork over budget (50 ms)"
    assert page["artwork_policy"] == "default"
    assert all(t["artwork_propensity"] == 1.0 and t["artwork_id"] == 10 * t["title_id"] for r in page["rows"] for t in r["titles"])


class _InProcessPolicy:
    """A bounded in-process policy (``in_process``): chosen in the page's own thread, no hop."""

    version = "inproc-1"
    in_process = True

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.threads = fail, []

    def select_page(self, profile_id, title_ids, positions, request_id, profile_features=None):
        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise ValueError("bad context")
        n = len(title_ids)
        return np.ones(n, np.int64), np.full(n, 0.5)


@pytest.mark.parametrize("fail", [False, True])
def test_an_in_process_policy_runs_in_the_page_thread_and_its_failure_degrades_only_the_artwork(tmp_path, fail):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    policy = _InProcessPolicy(fail=fail)
    service = build_service(cfg, playback=InMemoryPlaybackStore(), artwork=policy, background_reload=False)
    page = service.pages.get_page(ADULT, 3)
    assert policy.threads == [threading.current_thread().name]  # not a stage-pool thread
    assert page.personalized
    if fail:
        assert page.reason == "policy failed: bad context"  # choose_artwork's reason, as from the pool
        assert page.artwork.policy_version == "default" and dict(page.degraded) == {"artwork": "policy failed: bad context"}
    else:
        assert page.reason is None and page.artwork.policy_version == "inproc-1"
        assert set(page.artwork.propensities.tolist()) == {0.5}


def test_stage_pool_starts_bounded_work_inline_and_the_rest_in_its_threads():
    from serving.stages import StagePool

    pool = StagePool(max_workers=1, thread_name_prefix="stage")
    here = threading.current_thread().name
    assert pool.start(lambda _: threading.current_thread().name, 0, inline=True).result() == here
    assert pool.start(lambda _: threading.current_thread().name, 0).result().startswith("stage")
    assert isinstance(pool.start(lambda x: 1 / x, 0, inline=True).exception(), ZeroDivisionError)


class _BoundedStore(InMemoryPlaybackStore):
    """A store whose reads end within their own timeout (as Redis with a socket timeout)."""

    bounded_reads = True

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def get(self, profile_id: int) -> PlaybackState:
        self.threads.append(threading.current_thread().name)
        return super().get(profile_id)


def test_a_bounded_store_is_read_in_the_page_thread(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    store = _BoundedStore()
    service = build_service(cfg, playback=store, background_reload=False)
    page = service.pages.get_page(ADULT, 3)
    assert page.personalized and page.reason is None
    assert store.threads == [threading.current_thread().name]


def test_settle_process_sets_the_gil_switch_interval():
    from serving.api import settle_process

    before = sys.getswitchinterval()
    try:
        settle_process(1.0)
        assert sys.getswitchinterval() == pytest.approx(0.001)
    finally:
        sys.setswitchinterval(before)


def test_overloaded_gets_the_cohort_fallback_at_once_and_past_the_cap_503(tmp_path):
    cfg = make_config(tmp_path, **{"serving.overload_inflight": 4, "serving.max_inflight": 8, "serving.retry_after_s": 3})
    publish(cfg.snapshots_dir, "v1", cfg)
    client = api_client(build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False))
    gate = client.app.gate
    gate.inflight = 4  # four requests already in flight: this one is the fifth
    page = get_page(client, ADULT)
    assert_fallback(page, "overloaded")
    assert page["reason"] == "overloaded" and page["profile"]["region"] == "US"
    again = get_page(client, ADULT)  # served from the encoded-fallback cache: the same bytes for the rows
    assert again["rows"] == page["rows"]
    gate.inflight = 8
    r = client.get("/api/v1/pathways", params={"profile_id": ADULT})
    assert r.status_code == 503 and r.headers["retry-after"] == "3" and r.json() == {"error": "overloaded; retry"}
    gate.inflight = 0
    assert get_page(client, ADULT)["personalized"] is True


def test_page_built_for_another_cell_is_not_served(tmp_path):
    cfg = make_config(tmp_path, **{"experiment.cells": {"control": 0.0, "treatment": 1.0}})
    publish(cfg.snapshots_dir, "v1", make_config(tmp_path))  # pages built under the default cells
    client = api_client(build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False))
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


def test_rows_emptied_by_the_rules_are_filled_row_by_row_from_the_cohort(tmp_path):
    # The stored kids page is mostly mature titles: most of its 12 rows are emptied by the rules. (The
    # fixture's cohort rows hold the same titles as its pages: no de-duplication, or nothing would be left.)
    cfg = make_config(tmp_path, **{"page.dedupe_top_rows": 0})
    publish(cfg.snapshots_dir, "v1", cfg)
    client = api_client(build_service(cfg, playback=InMemoryPlaybackStore(), background_reload=False))
    page = get_page(client, KID, row_count=12)
    sources = [r["source"] for r in page["rows"]]
    assert page["personalized"] is True and page["reason"] is None
    n_own = sources.index("trending")
    assert 0 < n_own < len(sources) and set(sources[:n_own]) == {"als"} and set(sources[n_own:]) == {"trending"}
    assert [d["row_id"] for d in page["degraded"]] == [r["row_id"] for r in page["rows"][n_own:]]
    assert {d["rung"] for d in page["degraded"]} == {"cohort"}
    assert {d["reason"] for d in page["degraded"]} == {"personalized row emptied by the rules: filled from the fallback ladder"}
    catalog = Catalog.from_table(titles_table())
    assert violations(catalog, title_ids(page), "US", 1) == []
    assert get_page(client, ADULT, row_count=12)["degraded"] == []  # nothing emptied: nothing filled
