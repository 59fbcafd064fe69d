"""The page store: both backends round-trip pages in blocks; Redis versions, pointer, rollback, pruning, outage."""

from __future__ import annotations

import pytest

from pathways.pagestore import PageStoreUnavailable, RedisPageStore, SqlitePageStore
from tests.redis_server import needs_redis, redis_port, start_redis, stop_redis  # noqa: F401 - fixture

PAGES = {pid: f'{{"profile_id":{pid},"rows":[[{pid},{pid + 1}]]}}'.encode() for pid in range(1, 2501)}


def blocks(pages: dict[int, bytes], size: int = 700):
    items = list(pages.items())
    for start in range(0, len(items), size):
        yield items[start:start + size]


def test_sqlite_round_trip_in_blocks(tmp_path) -> None:
    store = SqlitePageStore()
    writer = store.writer(tmp_path)
    for block in blocks(PAGES):
        writer.put_many(block)
    assert writer.close() == len(PAGES)
    reader = store.reader(tmp_path, "v1")
    assert all(reader.get(pid) == page for pid, page in PAGES.items())
    assert reader.get(99_999) is None and len(reader) == len(PAGES)


def test_sqlite_rewrite_replaces_a_half_written_file(tmp_path) -> None:
    store = SqlitePageStore()
    half = store.writer(tmp_path)
    half.put_many([(1, b"old")])  # interrupted: never closed
    del half
    writer = store.writer(tmp_path)
    writer.put_many([(1, b"new"), (2, b"two")])
    assert writer.close() == 2
    assert store.reader(tmp_path, "v").get(1) == b"new"


def test_sqlite_reader_of_a_missing_file_is_unavailable(tmp_path) -> None:
    with pytest.raises(PageStoreUnavailable, match="page file missing"):
        SqlitePageStore().reader(tmp_path, "v1")


def test_sqlite_duplicate_profile_is_an_error(tmp_path) -> None:
    writer = SqlitePageStore().writer(tmp_path)
    with pytest.raises(Exception, match="UNIQUE"):
        writer.put_many([(1, b"a"), (1, b"b")])


@needs_redis
@pytest.mark.e2e
def test_redis_versions_pointer_rollback_and_prune(redis_port: int) -> None:  # noqa: F811
    store = RedisPageStore.from_url(f"127.0.0.1:{redis_port}", prefix="t1", timeout_s=1.0)
    for version, suffix in (("v1", b""), ("v2", b"-2")):
        writer = store.writer(version, block=300)
        for block in blocks(PAGES):
            writer.put_many((pid, page + suffix) for pid, page in block)
        assert writer.close() == len(PAGES)
    half = store.writer("v3")
    half.put_many([(1, b"partial")])  # never closed: not complete
    with pytest.raises(ValueError, match="v3 is not complete"):
        store.activate("v3")
    assert store.current() is None and store.reader().get(1) is None

    store.activate("v2")
    reader = store.reader()
    assert reader.get(7) == PAGES[7] + b"-2" and reader.version == "v2"
    assert store.reader("v1").get(7) == PAGES[7]
    store.activate("v1")  # rollback: one pointer write
    assert reader.get(7) == PAGES[7] and reader.version == "v1"
    assert store.versions() == ["v1", "v2"]

    with pytest.raises(ValueError, match="refusing to delete the live"):
        store.delete("v1")
    assert store.prune(keep=1, retention_s=3600) == []  # too young to prune
    store.activate("v2")
    assert store.prune(keep=1, retention_s=0.0, now=1e12) == ["v1"]
    assert store.versions() == ["v2"] and store.reader("v1").get(7) is None
    assert reader.get(7) == PAGES[7] + b"-2"


@needs_redis
@pytest.mark.e2e
def test_redis_down_is_unavailable_then_recovers(tmp_path) -> None:
    proc, port = start_redis(tmp_path)
    store = RedisPageStore.from_url(f"127.0.0.1:{port}", prefix="t2", timeout_s=0.2)
    writer = store.writer("v1")
    writer.put_many([(1, b"p1")])
    writer.close()
    store.activate("v1")
    assert store.reader().get(1) == b"p1"
    stop_redis(proc)
    with pytest.raises(PageStoreUnavailable):
        store.reader().get(1)
    proc, _ = start_redis(tmp_path, port)  # no persistence: empty again, but reachable
    try:
        assert store.reader().get(1) is None
    finally:
        stop_redis(proc)
