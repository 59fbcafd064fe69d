"""One online read per page: the playback state and the artwork context's features come together,
and the server's impression log takes one bounded queue item per page (dropped and counted beyond)
and appends one entry per page to its own stream."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq

from features.history import PlaybackState
from features.ingest import read_events
from features.stream import open_stream
from features.stream.impressions import impressions_table
from features.stream.lake import LakeConsumer
from serving.impressions import ImpressionLog
from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from tests.serving.snapshot_fixtures import ADULT, api_client, get_page, make_config, publish
from tests.serving.test_operations import _Stream, sample

AFFINITY = {"genre_affinity": [0.5, 0.5]}


class _Store(InMemoryPlaybackStore):
    """Counts reads; answers the page read with features, as the Feast store does."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.page_reads = self.plain_reads = 0
        self.delay_s = delay_s

    def get(self, profile_id: int) -> PlaybackState:
        self.plain_reads += 1
        return super().get(profile_id)

    def get_with_features(self, profile_id: int) -> tuple[PlaybackState, dict | None]:
        self.page_reads += 1
        time.sleep(self.delay_s)
        self._check()
        return self._states.get(int(profile_id), PlaybackState()), dict(AFFINITY)


class _Policy:
    version = "ctx-1"

    def __init__(self) -> None:
        self.features: list = []

    def select_page(self, profile_id, title_ids, positions, request_id, profile_features=None):
        self.features.append(profile_features)
        n = len(title_ids)
        return np.ones(n, np.int64), np.full(n, 0.5)


def _service(tmp_path, store, policy, **overrides):
    cfg = make_config(tmp_path, **overrides)
    publish(cfg.snapshots_dir, "v1", cfg)
    return build_service(cfg, playback=store, artwork=policy, background_reload=False)


def test_one_online_read_per_page_feeds_the_overlay_and_the_artwork(tmp_path):
    store, policy = _Store(), _Policy()
    client = api_client(_service(tmp_path, store, policy))
    personalized, unknown = get_page(client, ADULT), get_page(client, 987_654)
    assert personalized["personalized"] and personalized["degraded"] == [] and unknown["reason"] == "unknown profile"
    assert store.page_reads == 2 and store.plain_reads == 0
    assert policy.features == [AFFINITY, AFFINITY]
    assert {t["artwork_propensity"] for r in personalized["rows"] for t in r["titles"]} == {0.5}


def test_store_down_the_policy_gets_the_average_member_and_no_second_read(tmp_path):
    store, policy = _Store(), _Policy()
    client = api_client(_service(tmp_path, store, policy))
    store.available = False
    page = get_page(client, ADULT)
    assert page["personalized"] and page["reason"] == "online store unavailable" and page["artwork_policy"] == "ctx-1"
    assert policy.features == [{}] and store.page_reads == 1


def test_a_slow_store_degrades_the_overlay_and_the_artwork_within_their_budgets(tmp_path):
    store, policy = _Store(delay_s=0.5), _Policy()
    budgets = {"serving.personalize_budget_ms": 50.0, "serving.artwork_budget_ms": 50.0}
    client = api_client(_service(tmp_path, store, policy, **budgets))
    t0 = time.perf_counter()
    page = get_page(client, ADULT)
    assert time.perf_counter() - t0 < 0.4
    assert page["personalized"] and page["artwork_policy"] == "default"
    assert page["reason"] == "real-time overlay over budget (50 ms); artwork over budget (50 ms)"
    assert policy.features == [] and store.page_reads == 1


def test_impressions_one_queue_item_per_page_bounded_drop_counted(tmp_path):
    from serving.metrics import render

    store, policy = _Store(), _Policy()
    service = _service(tmp_path, store, policy, **{"serving.impression_rows_logged": 2})
    log = ImpressionLog(_Stream(), 2, max_pages=2)
    log._start = lambda: None  # no appending thread: the queue fills up
    service.pages.impressions = log
    client = api_client(service)
    before = sample(render()[0].decode(), "pathways_artwork_impressions_total", outcome="dropped")
    pages = [get_page(client, ADULT, row_count=3) for _ in range(3)]
    per_page = sum(len(r["titles"]) for r in pages[0]["rows"][:2])
    assert log._queue.qsize() == 2 and log.dropped == per_page  # the third page's impressions: dropped
    after = sample(render()[0].decode(), "pathways_artwork_impressions_total", outcome="dropped")
    assert after - before == per_page
    assert log.flush(timeout_s=0.1) == 2 * per_page  # both queued pages in one append, one entry each
    assert [e["event_id"] for e in log.stream.appended] == [pages[0]["request_id"], pages[1]["request_id"]]
    events = impressions_table(log.stream.appended).to_pylist()
    assert {e["session_id"] for e in events} == {pages[0]["request_id"], pages[1]["request_id"]}
    first = [e for e in events if e["session_id"] == pages[0]["request_id"]]
    shown = [(i, j, t["title_id"], t["artwork_id"]) for i, r in enumerate(pages[0]["rows"][:2]) for j, t in enumerate(r["titles"])]
    assert [(e["row_index"], e["position"], e["title_id"], e["artwork_id"]) for e in first] == shown
    assert {e["propensity"] for e in events} == {0.5}


def test_a_request_that_waited_past_the_queue_budget_gets_the_fallback_at_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    # the personalization budget well above the store's 0.5 s: the busy page must not run out of it on a loaded machine
    budgets = {"serving.page_workers": 1, "serving.queue_budget_ms": 50.0, "serving.personalize_budget_ms": 2000.0,
               "serving.deadline_ms": 3000.0}
    client = api_client(_service(tmp_path, _Store(delay_s=0.5), None, **budgets))
    with ThreadPoolExecutor(2) as pool:  # the one page worker is busy ~0.5 s with whichever page comes first
        pages = [pool.submit(get_page, client, ADULT) for _ in range(2)]
        served = sorted((p.result() for p in pages), key=lambda page: page["personalized"])
    late, busy = served
    assert busy["personalized"] and busy["reason"] is None
    assert late["personalized"] is False and late["reason"] == "overloaded" and late["rows"]


def test_impressions_go_to_their_own_stream_the_lake_gets_them_the_realtime_group_never_sees_them(tmp_path):
    """One entry per page in the impressions stream; the real-time consumer (events stream) reads
    none of them; the lake consumer of the impressions stream lands one row per title, once."""
    service = _service(tmp_path, _Store(), _Policy(), **{"serving.impression_rows_logged": 2})
    cfg, log, realtime = service.pages.config, service.pages.impressions, service.events.realtime
    log._start = lambda: None  # appended below, in this thread, as the log's thread would
    client = api_client(service)
    pages = [get_page(client, ADULT, row_count=3) for _ in range(2)]
    shown = [(p["request_id"], t["title_id"], i, j) for p in pages for i, r in enumerate(p["rows"][:2])
             for j, t in enumerate(r["titles"])]
    assert log.flush(timeout_s=1.0) == len(shown)
    impressions = open_stream(cfg, "impressions")
    assert impressions.lag(cfg.stream.lake_group) == 2  # one entry per page
    assert realtime.stream.read(realtime.group, realtime.consumer, 10_000) == []
    assert open_stream(cfg).lag(cfg.stream.lake_group) == 0  # nothing in the events stream
    snap = cfg.snapshots_dir / "v1"
    lake = LakeConsumer(impressions, cfg.lake_dir, pq.read_table(snap / "titles.parquet"),
                        pq.read_table(snap / "profiles.parquet"), stream_name="impressions")
    report = lake.poll(block_s=0.0) or lake.flush()
    assert report is not None and (report.rows_in, report.accepted) == (len(shown), len(shown))
    rows = read_events(cfg.lake_dir).to_pylist()
    assert sorted((r["session_id"], r["title_id"], r["row_index"], r["position"]) for r in rows) == sorted(shown)
    assert all(r["event_id"] == f"{r['session_id']}:{r['title_id']}" and r["event_type"] == "artwork_impression"
               and r["policy_version"] == "ctx-1" and r["propensity"] == 0.5 for r in rows)
    assert impressions.lag(cfg.stream.lake_group) == 0
