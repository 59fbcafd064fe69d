"""Heartbeats and events: appended durably to the event stream, and visible on the very next page."""

from __future__ import annotations

import uuid

import pyarrow.parquet as pq
import pytest

from features.history import PlaybackState
from features.ingest import read_events
from features.schema import EVENT_SCHEMA
from features.stream import open_stream
from features.stream.lake import LakeConsumer
from serving.playback import OnlinePlaybackStore, OnlineStoreUnavailable
from tests.serving.snapshot_fixtures import ADULT, KID, NO_PAGE, RUNTIME_S, get_page, title_ids


def heartbeat(client, profile_id: int, title_id: int, fraction: float, **extra) -> dict:
    body = {"profile_id": profile_id, "title_id": title_id, "position_s": fraction * RUNTIME_S, **extra}
    r = client.put("/api/v1/playback/sess-1/heartbeat", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def landed(config) -> list[dict]:
    """Every event in the stream (read by a fresh consumer group), oldest first."""
    return [e.event for e in open_stream(config).read(f"check-{uuid.uuid4().hex}", "test", 10_000)]


def test_heartbeat_puts_the_title_first_in_continue_watching(client):
    assert get_page(client, ADULT)["rows"][0]["titles"][0]["title_id"] == 12  # from the snapshot
    assert heartbeat(client, ADULT, 30, 0.4)["title_status"] == "in_progress"
    first = get_page(client, ADULT)["rows"][0]
    assert first["source"] == "continue_watching"
    assert [t["title_id"] for t in first["titles"]][:2] == [30, 12]
    heartbeat(client, ADULT, 3, 0.2)  # the most recent goes first
    assert [t["title_id"] for t in get_page(client, ADULT)["rows"][0]["titles"]][:3] == [3, 30, 12]


def test_heartbeat_on_a_new_profile_page_creates_the_row(client):
    heartbeat(client, KID, 3, 0.5)
    first = get_page(client, KID)["rows"][0]
    assert first["source"] == "continue_watching" and first["titles"][0]["title_id"] == 3


def test_continue_watching_obeys_the_rules(client):
    heartbeat(client, KID, 25, 0.5)  # a mature title watched on the kids profile: never shown
    page = get_page(client, KID)
    assert 25 not in title_ids(page)


@pytest.mark.parametrize("how", ["fraction", "completed"])
def test_finishing_removes_the_title_from_every_row(client, config, how):
    before = get_page(client, ADULT)
    target = 4  # title 4 sits in rows 0 and 1 of the stored page
    assert target in title_ids(before)
    heartbeat(client, ADULT, target, 0.5)
    assert get_page(client, ADULT)["rows"][0]["titles"][0]["title_id"] == target
    if how == "fraction":
        status = heartbeat(client, ADULT, target, config.candidates.finished_fraction)["title_status"]
    else:
        status = heartbeat(client, ADULT, target, 0.3, completed=True)["title_status"]
    assert status == "finished"
    after = get_page(client, ADULT)
    assert target not in title_ids(after)
    heartbeat(client, ADULT, target, 0.5)  # a re-watch does not bring a finished title back
    assert target not in title_ids(get_page(client, ADULT))


def test_finished_in_snapshot_row_is_dropped(client):
    heartbeat(client, ADULT, 12, 1.0)
    assert 12 not in title_ids(get_page(client, ADULT))


def test_heartbeats_land_as_event_schema_parquet(client, config):
    heartbeat(client, ADULT, 30, 0.4, device="tv")
    heartbeat(client, ADULT, 30, 0.5, completed=True)
    consumer = LakeConsumer(open_stream(config), config.lake_dir, pq.read_table(config.snapshots_dir / "v1" / "titles.parquet"),
                            pq.read_table(config.snapshots_dir / "v1" / "profiles.parquet"))
    report = consumer.poll(block_s=0.0) or consumer.flush()
    assert report is not None and report.accepted == 3
    files = sorted((config.lake_dir / "events").rglob("*.parquet"))
    assert len(files) == 1  # one file per day partition and flush, not one per request
    assert [f.name for f in pq.read_schema(files[0])] == EVENT_SCHEMA.names
    assert read_events(config.lake_dir).num_rows == 3
    rows = landed(config)
    assert [r["event_type"] for r in rows] == ["heartbeat", "heartbeat", "complete"]
    assert rows[0]["session_id"] == "sess-1" and rows[0]["device"] == "tv"
    assert rows[0]["position_s"] == pytest.approx(0.4 * RUNTIME_S)
    assert len({r["event_id"] for r in rows}) == 3
    assert not list(config.lake_dir.rglob("*.tmp"))


def test_posted_events_land_and_update_state(client, config, store):
    events = [
        {"event_id": "e1", "event_type": "play", "ts": "2026-11-01T10:00:00Z", "profile_id": ADULT, "title_id": 33,
         "fraction_watched": 0.3, "device": "web"},
        {"event_id": "e2", "event_type": "impression", "ts": "2026-11-01T09:59:00Z", "profile_id": ADULT,
         "title_id": 34, "row_index": 2, "position": 5},
        {"event_type": "search", "profile_id": KID, "query": "dogs"},
    ]
    r = client.post("/api/v1/events", json=events)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 3 and r.json()["state_updated"] is True
    rows = {r["event_id"]: r for r in landed(config)}
    assert set(rows) >= {"e1", "e2"} and len(rows) == 3
    assert rows["e2"]["row_index"] == 2 and rows["e1"]["fraction_watched"] == pytest.approx(0.3)
    assert store.get(ADULT).in_progress[33][0] == pytest.approx(0.3)
    assert get_page(client, ADULT)["rows"][0]["titles"][0]["title_id"] == 33
    single = client.post("/api/v1/events", json={"event_type": "rating", "profile_id": KID, "title_id": 3, "rating": 4.5})
    assert single.status_code == 202 and single.json()["accepted"] == 1


BAD_EVENTS = [
    ({"event_type": "play", "profile_id": 1, "title_id": 2, "colour": "red"}, "colour"),
    ({"event_type": "teleport", "profile_id": 1, "title_id": 2}, "event_type"),
    ({"event_type": "play", "profile_id": 1}, "title_id"),
    ({"event_type": "play", "profile_id": "one", "title_id": 2}, "profile_id"),
    ({"event_type": "play", "profile_id": 1, "title_id": 2, "fraction_watched": 1.5}, "fraction_watched"),
    ({"event_type": "rating", "profile_id": 1, "title_id": 2}, "rating"),
    ({"event_type": "artwork_impression", "profile_id": 1, "title_id": 2, "artwork_id": 1, "propensity": 0}, "propensity"),
    ({"event_type": "heartbeat", "profile_id": 1, "title_id": 2, "position_s": -3}, "position_s"),
    ({"event_type": "play", "profile_id": 1, "title_id": 2, "ts": "yesterday"}, "ts"),
    ([], "empty"),
]


@pytest.mark.parametrize(("body", "field"), BAD_EVENTS)
def test_invalid_events_are_rejected_and_nothing_lands(client, config, body, field):
    good = {"event_type": "play", "profile_id": 1, "title_id": 2, "fraction_watched": 0.5}
    payload = [good, body] if isinstance(body, dict) else body
    r = client.post("/api/v1/events", json=payload)
    assert r.status_code == 422 and field in r.text
    assert landed(config) == []


def test_bad_heartbeats_and_bodies(client, config):
    assert client.put("/api/v1/playback/s/heartbeat", json={"profile_id": 1, "title_id": 2}).status_code == 422
    extra = {"profile_id": 1, "title_id": 2, "position_s": 5, "speed": 2}
    assert client.put("/api/v1/playback/s/heartbeat", json=extra).status_code == 422
    r = client.post("/api/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert landed(config) == []


def test_online_store_down_still_lands_the_heartbeat(client, config, store):
    store.available = False
    body = heartbeat(client, ADULT, 30, 0.4)
    assert body["state_updated"] is False and body["reason"] == "online store unavailable"
    assert len(landed(config)) == 1


class _FakeClient:
    def __init__(self) -> None:
        self.pushed: dict[int, PlaybackState] = {}
        self.down = False

    def playback_state(self, profile_id: int) -> PlaybackState:
        if self.down:
            raise OnlineStoreUnavailable("redis down")
        return self.pushed.get(profile_id, PlaybackState())

    def write_playback_state(self, profile_id: int, state: PlaybackState) -> None:
        if self.down:
            raise OnlineStoreUnavailable("redis down")
        self.pushed[profile_id] = state


def test_online_adapter_maps_the_client_api():
    fake = _FakeClient()
    store = OnlinePlaybackStore("unused", client=fake)
    state = PlaybackState({5: (0.5, 1.0)}, frozenset({6}))
    store.put(9, state)
    assert store.get(9) == state and store.ping() is True
    fake.down = True
    assert store.ping() is False
    with pytest.raises(OnlineStoreUnavailable):
        store.get(9)


def test_fallback_pages_drop_titles_the_profile_finished(client):
    before = title_ids(get_page(client, NO_PAGE))
    target = before[0]
    heartbeat(client, NO_PAGE, target, 1.0)
    page = get_page(client, NO_PAGE)
    assert page["personalized"] is False and target not in title_ids(page)
