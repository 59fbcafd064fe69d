"""Snapshot reload (atomic swap, broken versions kept out) and artwork selection per title."""

from __future__ import annotations

import time

import numpy as np

from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from serving.snapshots import SnapshotStore
from tests.serving.snapshot_fixtures import ADULT, api_client, get_page, make_config, publish


def test_new_snapshot_is_picked_up_and_a_broken_one_is_kept_out(client, config):
    assert get_page(client, ADULT)["snapshot"] == "v1"
    publish(config.snapshots_dir, "v2", config, with_cw=False)
    page = get_page(client, ADULT)
    assert page["snapshot"] == "v2" and page["personalized"] is True
    assert page["rows"][0]["source"] != "continue_watching"  # v2's page has no such row
    broken = config.snapshots_dir / "v3"
    broken.mkdir()
    (broken / "manifest.json").write_text('{"version": "v3"}')
    (broken / "pages.parquet").write_bytes(b"not parquet")
    (config.snapshots_dir / "CURRENT").write_text("v3\n")
    page = get_page(client, ADULT)
    assert page["snapshot"] == "v2" and page["personalized"] is True
    assert client.get("/healthz").json()["snapshot"] == "v2"


def test_background_reload_swaps_without_blocking(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    store = SnapshotStore(cfg.snapshots_dir, poll_s=0.001, background=True)
    assert store.refresh().snapshot.version == "v1"
    publish(cfg.snapshots_dir, "v2", cfg)
    deadline = time.monotonic() + 5.0
    seen = set()
    while time.monotonic() < deadline:
        state = store.state()
        assert state.snapshot is not None and state.problem is None  # never a gap while loading
        seen.add(state.snapshot.version)
        if state.snapshot.version == "v2":
            break
        time.sleep(0.005)
    assert "v2" in seen


def test_polling_waits_poll_s_between_checks(tmp_path):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    now = [0.0]
    store = SnapshotStore(cfg.snapshots_dir, poll_s=10.0, background=False, clock=lambda: now[0])
    assert store.state().snapshot.version == "v1"
    publish(cfg.snapshots_dir, "v2", cfg)
    now[0] = 5.0
    assert store.state().snapshot.version == "v1"
    now[0] = 10.5
    assert store.state().snapshot.version == "v2"


class _ThirdArm:
    version = "fake-1"

    def select_page(self, profile_id, title_ids, positions, request_id, profile_features=None):
        ids = np.asarray(title_ids)
        assert np.asarray(positions).shape == ids.shape and request_id == "req-7"
        return ids % 3, np.full(len(ids), 0.25)


class _Broken:
    version = "broken-1"

    def select_page(self, profile_id, title_ids, positions, request_id, profile_features=None):
        return np.zeros(1, np.int64), np.ones(1)  # wrong shape


def _client(tmp_path, artwork):
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    return api_client(build_service(cfg, InMemoryPlaybackStore(), artwork, background_reload=False))


def test_artwork_policy_choice_and_propensity_are_in_the_response(tmp_path):
    client = _client(tmp_path, _ThirdArm())
    for pid in (ADULT, 555):  # personalized and fallback pages alike
        r = client.get("/api/v1/pathways", params={"profile_id": pid}, headers={"x-request-id": "req-7"})
        page = r.json()
        assert page["artwork_policy"] == "fake-1" and page["request_id"] == "req-7"
        cards = [t for row in page["rows"] for t in row["titles"]]
        assert cards
        assert all(t["artwork_id"] == 10 * t["title_id"] + t["title_id"] % 3 for t in cards)
        assert all(t["artwork_propensity"] == 0.25 for t in cards)


def test_a_failing_artwork_policy_gives_default_artwork(tmp_path):
    page = get_page(_client(tmp_path, _Broken()), ADULT)
    assert page["personalized"] is True and page["artwork_policy"] == "default"
    cards = [t for row in page["rows"] for t in row["titles"]]
    assert all(t["artwork_id"] == 10 * t["title_id"] and t["artwork_propensity"] == 1.0 for t in cards)


def test_bandits_default_artwork_plugs_in(tmp_path):
    from bandits.serving import DefaultArtwork

    page = get_page(_client(tmp_path, DefaultArtwork()), ADULT)
    assert page["artwork_policy"] == "default"
    assert all(t["artwork_propensity"] == 1.0 for row in page["rows"] for t in row["titles"])


def test_a_withdrawn_champion_degrades_only_the_artwork_until_one_is_back(tmp_path):
    from serving.artwork import ARTWORK_POLICY_REMOVED, RegistryArtwork

    class Second(_ThirdArm):
        version = "fake-2"

    now, champion, loads = [0.0], ["1"], []
    policy = RegistryArtwork(_ThirdArm(), "1", lambda: loads.append(1) or Second(), lambda: champion[0], 10.0,
                             background=False, clock=lambda: now[0])
    client = _client(tmp_path, policy)

    def page() -> dict:
        return client.get("/api/v1/pathways", params={"profile_id": ADULT}, headers={"x-request-id": "req-7"}).json()

    assert page()["artwork_policy"] == "fake-1"
    champion[0] = None  # the alias is deleted in the registry
    assert page()["artwork_policy"] == "fake-1"  # not re-checked before poll_s
    now[0] = 11.0
    withdrawn = page()
    assert withdrawn["personalized"] is True and withdrawn["artwork_policy"] == "default"
    assert ARTWORK_POLICY_REMOVED in withdrawn["reason"]
    assert {d["reason"] for d in withdrawn["degraded"]} == {ARTWORK_POLICY_REMOVED}
    assert len(withdrawn["degraded"]) == len(withdrawn["rows"])
    cards = [t for row in withdrawn["rows"] for t in row["titles"]]
    assert cards and all(t["artwork_id"] == 10 * t["title_id"] and t["artwork_propensity"] == 1.0 for t in cards)
    champion[0] = "2"
    now[0] = 22.0
    back = page()
    assert back["artwork_policy"] == "fake-2" and back["degraded"] == [] and loads == [1]


def test_a_registry_that_cannot_be_read_keeps_the_policy(tmp_path):
    from serving.artwork import RegistryArtwork

    def unreachable() -> str:
        raise OSError("registry down")

    now = [0.0]
    policy = RegistryArtwork(_ThirdArm(), "1", _ThirdArm, unreachable, 1.0, background=False, clock=lambda: now[0])
    now[0] = 5.0
    assert policy.problem is None and policy.version == "fake-1"


class _CountingLoader:
    """``load_snapshot``, remembering which versions were opened."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def __call__(self, path):
        from serving.snapshots import load_snapshot

        self.opened.append(path.name)
        return load_snapshot(path)


def test_a_rollback_and_the_roll_forward_swap_to_the_snapshot_kept_loaded(tmp_path):
    from pathways.snapshot import switch_current

    cfg = make_config(tmp_path)
    for version in ("v1", "v2", "v3"):
        publish(cfg.snapshots_dir, version, cfg)
    loader = _CountingLoader()
    store = SnapshotStore(cfg.snapshots_dir, poll_s=0.0, background=False, loader=loader)
    assert store.refresh().snapshot.version == "v3"
    assert loader.opened == ["v3", "v2"] and store.standby_version == "v2"  # the rollback target, loaded at start-up
    switch_current(cfg.snapshots_dir, "v2")
    state = store.state()
    assert state.snapshot.version == "v2" and state.problem is None and state.snapshot.page(ADULT) is not None
    assert loader.opened == ["v3", "v2"] and store.standby_version == "v3"  # no load; the one swapped out waits
    switch_current(cfg.snapshots_dir, "v3")
    assert store.state().snapshot.version == "v3" and loader.opened == ["v3", "v2"]
    switch_current(cfg.snapshots_dir, "v1")  # further back than the standby: a load
    assert store.state().snapshot.version == "v1" and loader.opened == ["v3", "v2", "v1"]
    assert store.standby_version == "v3"


def test_a_standby_whose_files_are_gone_is_not_served(tmp_path):
    import shutil

    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    publish(cfg.snapshots_dir, "v2", cfg)
    loader = _CountingLoader()
    store = SnapshotStore(cfg.snapshots_dir, poll_s=0.0, background=False, loader=loader)
    store.refresh()
    assert store.standby_version == "v1"
    shutil.rmtree(cfg.snapshots_dir / "v1")
    (cfg.snapshots_dir / "CURRENT").write_text("v1\n")
    state = store.state()
    assert state.snapshot.version == "v2" and loader.opened == ["v2", "v1", "v1"]  # tried from disk, failed
    assert store.standby_version is None


def test_without_standby_a_rollback_loads(tmp_path):
    from pathways.snapshot import switch_current

    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    publish(cfg.snapshots_dir, "v2", cfg)
    loader = _CountingLoader()
    store = SnapshotStore(cfg.snapshots_dir, poll_s=0.0, background=False, loader=loader, standby=False)
    store.refresh()
    switch_current(cfg.snapshots_dir, "v1")
    assert store.state().snapshot.version == "v1" and loader.opened == ["v2", "v1"] and store.standby_version is None


def test_a_background_store_rolls_back_in_the_polling_request(tmp_path):
    from pathways.snapshot import switch_current

    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    publish(cfg.snapshots_dir, "v2", cfg)
    store = SnapshotStore(cfg.snapshots_dir, poll_s=0.0, background=True)
    assert store.refresh().snapshot.version == "v2"
    deadline = time.monotonic() + 10.0
    while store.standby_version is None and time.monotonic() < deadline:  # loading in its own thread
        time.sleep(0.005)
    assert store.standby_version == "v1"
    switch_current(cfg.snapshots_dir, "v1")
    assert store.state().snapshot.version == "v1"  # this very call: no background load to wait for
    switch_current(cfg.snapshots_dir, "v2")
    assert store.state().snapshot.version == "v2"
