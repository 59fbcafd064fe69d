"""Profile records in the page store: ``LoadedSnapshot.profile`` from SQLite and Redis, unknown
profiles, access control's ``account_of``, the older layout (``profiles.parquet`` in memory), outage."""

from __future__ import annotations

import time

import pytest

from pathways.pageblob import encode_page
from pathways.pagestore import PAGES_SQLITE, PageStoreUnavailable, RedisPageStore
from pathways.profilerecords import pack_record, profile_rows, read_profiles, unpack_record
from pathways.snapshot import current_dir
from pathways.types import ProfileContext
from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from serving.snapshots import ProfileIndex, StorePages, StoreProfiles, load_snapshot
from tests.redis_server import needs_redis, redis_port, start_redis, stop_redis  # noqa: F401 - fixture
from tests.serving.snapshot_fixtures import (
    ADULT,
    BR_ADULT,
    KID,
    NO_PAGE,
    make_config,
    profiles_table,
    publish,
    stored_page,
)

EXPECTED = {
    ADULT: ProfileContext(ADULT, "US", 4, is_kids=False, account_id=10),
    KID: ProfileContext(KID, "US", 1, is_kids=True, account_id=10),
    BR_ADULT: ProfileContext(BR_ADULT, "BR", 3, is_kids=False, account_id=11),
    NO_PAGE: ProfileContext(NO_PAGE, "US", 4, is_kids=False, account_id=12),
}


def _snapshot(tmp_path, profile_records: bool = True):
    config = make_config(tmp_path)
    publish(config.snapshots_dir, "v1", config, profile_records=profile_records)
    return config, load_snapshot(current_dir(config.snapshots_dir))


@pytest.mark.parametrize("profile_records", [True, False], ids=["store", "old_layout"])
def test_profile_records_from_the_store_or_the_old_layout(tmp_path, profile_records) -> None:
    _, snap = _snapshot(tmp_path, profile_records)
    assert isinstance(snap.profiles, StoreProfiles if profile_records else ProfileIndex)
    assert {pid: snap.profile(pid) for pid in EXPECTED} == EXPECTED
    assert snap.profile(999) is None and snap.profile(-1) is None and snap.profile(2**40) is None
    assert len(snap.profiles) == 4 and snap.page(ADULT) is not None and snap.page(NO_PAGE) is None


def test_the_store_holds_exactly_the_profiles_of_profiles_parquet(tmp_path) -> None:
    import pyarrow.parquet as pq

    config, snap = _snapshot(tmp_path)
    regions, blocks = read_profiles(snap.path / PAGES_SQLITE)
    stored = {pid: (regions[code], maturity, bool(kids), account) for block in blocks
              for pid, code, maturity, kids, account in block}
    table = pq.read_table(snap.path / "profiles.parquet").to_pylist()
    assert stored == {r["profile_id"]: (r["region"], r["max_maturity_level"], r["is_kids"], r["account_id"])
                      for r in table}


def test_account_of_reads_the_store_for_access_control(tmp_path) -> None:
    config, _ = _snapshot(tmp_path)
    service = build_service(config, playback=InMemoryPlaybackStore(), background_reload=False)
    assert isinstance(service.pages.snapshots.state().snapshot.profiles, StoreProfiles)
    assert [service.pages.account_of(p) for p in (ADULT, KID, BR_ADULT, 999)] == [10, 10, 11, None]


def test_sqlite_profile_read_is_cheap(tmp_path) -> None:
    """One indexed lookup per call: well under 30 us of CPU on this data (1M-profile stores: see the report)."""
    _, snap = _snapshot(tmp_path)
    t0 = time.process_time()
    for _ in range(2000):
        snap.profile(BR_ADULT)
    assert (time.process_time() - t0) / 2000 < 200e-6  # generous: shared 2-core CI


def test_record_packing_round_trips() -> None:
    names, blocks = profile_rows(profiles_table(), block=3)
    rows = [r for b in blocks for r in b]
    assert len(rows) == 4 and len(pack_record(rows[0])) == 12
    got = [unpack_record(names, pack_record(r)) for r in rows]
    assert [(g.region, g.max_maturity_level, g.is_kids, g.account_id) for g in got] == [
        (e.region, e.max_maturity_level, e.is_kids, e.account_id) for e in EXPECTED.values()]
    no_account = (5, 0, 2, 0, None)
    assert unpack_record(names, pack_record(no_account)).account_id is None


def _redis_version(store: RedisPageStore, version: str, with_records: bool = True) -> None:
    writer = store.writer(version, block=2)
    writer.put_many((pid, encode_page("control", stored_page(pid, "US", 4, n_rows=2))) for pid in (ADULT, KID))
    if with_records:
        assert writer.put_profiles(*profile_rows(profiles_table(), block=3)) == 4
    writer.close()


@needs_redis
def test_redis_profile_records_read_and_deleted_with_the_version(redis_port) -> None:  # noqa: F811
    store = RedisPageStore.from_url(f"127.0.0.1:{redis_port}", prefix="tp", timeout_s=1.0)
    _redis_version(store, "v1")
    _redis_version(store, "v0", with_records=False)  # written before records were stored
    reader = store.reader("v1")
    assert reader.profile_count() == 4 and store.reader("v0").profile_count() is None
    profiles = StoreProfiles(reader, 4)
    assert {pid: profiles.get(pid) for pid in EXPECTED} == EXPECTED and profiles.get(999) is None
    assert StorePages(reader, 2).get(KID).cell == "control"
    store.activate("v0")
    assert store.delete("v1") == 2 + 4 + 2  # pages, records, the names key and the complete marker
    assert store.client.keys("tp:v1:*") == []


@needs_redis
def test_redis_down_answers_unknown_profiles_not_errors(tmp_path) -> None:
    proc, port = start_redis(tmp_path)
    store = RedisPageStore.from_url(f"127.0.0.1:{port}", prefix="tq", timeout_s=0.2)
    _redis_version(store, "v1")
    reader = store.reader("v1")
    profiles = StoreProfiles(reader, reader.profile_count())
    assert profiles.get(ADULT) == EXPECTED[ADULT]
    stop_redis(proc)
    assert profiles.get(ADULT) is None  # unknown to the page path: the kids-safe fallback
    with pytest.raises(PageStoreUnavailable):  # access binding and event intake must tell "cannot say"
        profiles.strict(ADULT)
