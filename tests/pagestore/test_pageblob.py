"""The page store's value: compact page bytes round-trip exactly, and the snapshot reads them back
the same as the JSON layout serving used to parse."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow as pa
import pytest

from pathways import pageblob
from pathways.pageblob import ZSTD_MAGIC, decode_page, encode_page, row_count
from pathways.snapshot import PAGES, PAGES_SCHEMA, SnapshotWriter, pages_checksum, read_pages
from pathways.types import CompactRows, Page, Row, RowHeader, TitleCard
from serving.rows import parse_pages
from serving.snapshots import load_snapshot
from tests.serving.snapshot_fixtures import profiles_table, stored_page, titles_table


def _same(a: CompactRows, b: CompactRows) -> bool:
    return (a.headers == b.headers and np.array_equal(a.offsets, b.offsets)
            and np.array_equal(a.title_ids, b.title_ids) and np.array_equal(a.scores, b.scores))


def _rows(ids: list[list[int]], scores: list[list[float]]) -> CompactRows:
    headers = [RowHeader(f"r:{i}", f"Row {i}", "als", f"because {i} ✓") for i in range(len(ids))]
    return CompactRows.build(headers, [np.array(i, np.int64) for i in ids], [np.array(s) for s in scores])


@pytest.mark.parametrize(
    "rows",
    [
        _rows([[1, 2, 3], [4]], [[0.5, 0.25, -1.0], [3.0]]),  # float32-exact: narrow storage
        _rows([[1, 2]], [[0.1234567891, 2.0 / 3.0]]),  # not float32-exact: float64 kept
        _rows([[2**40, 5]], [[1.0, 2.0]]),  # ids past int32
        CompactRows.empty(),
    ],
)
def test_round_trip_is_exact(rows: CompactRows) -> None:
    stored = decode_page(encode_page("challenger", rows))
    assert stored.cell == "challenger" and _same(stored.rows, rows)
    assert row_count(encode_page("c", rows)) == len(rows)


def test_a_page_round_trips_as_its_compact_rows_and_its_json() -> None:
    cards = tuple(TitleCard(t, f"T{t}", 0, score=float(np.float32(1.0 / t))) for t in range(1, 30))
    page = Page(1, "US", 4, (Row("a", "A", "als", "e", cards[:20]), Row("b", "B", "genre", "g", cards[10:])), True)
    stored = decode_page(encode_page("control", page))
    import json

    (from_json,) = parse_pages([json.dumps(page.to_dict())])
    assert _same(stored.rows, page.compact_rows()) and _same(stored.rows, from_json)


@pytest.mark.parametrize("blob", [
    b"", b"not zlib", zlib.compress(b"XXXX" + bytes(20)),  # not pages, a zlib body that is not one
    b"PWZ1\x01\x00", b"PWZ1" + bytes(8) + b"not zstd",  # a zstd header cut short, a frame that is not one
    b"PWZ1\x01\x00\x00\x00\xff\xff\xff\x7f" + bytes(20),  # a body of 2 GB declared: refused, not allocated
])
def test_bad_bytes_are_a_value_error(blob: bytes) -> None:
    with pytest.raises(ValueError, match="not a stored page"):
        decode_page(blob)


def test_a_page_published_before_zstd_still_reads() -> None:
    """Older snapshots hold the body zlib-compressed (no outer header): a rollback serves them."""
    rows = _rows([[1, 2, 3], [4]], [[0.5, 0.25, -1.0], [3.0]])
    blob = encode_page("control", rows)
    assert blob[:4] == ZSTD_MAGIC and row_count(blob) == 2
    old = zlib.compress(pageblob._body(blob), 1)
    stored = decode_page(old)
    assert stored.cell == "control" and _same(stored.rows, rows) and row_count(old) == 2
    wrong = blob[:4] + (3).to_bytes(4, "little") + blob[8:]  # the outer row count must agree with the body's
    with pytest.raises(ValueError, match="inconsistent"):
        decode_page(wrong)


def _publish(root, version: str, legacy: bool) -> None:
    writer = SnapshotWriter(root, version)
    pages = [(pid, "control", stored_page(pid, "US", 4)) for pid in (1, 2, 3)]
    if legacy:
        import json

        writer.write_table(PAGES, pa.table({"profile_id": [1, 2, 3], "cell": ["control"] * 3,
                                            "page_json": [json.dumps(p.to_dict()) for _, _, p in pages]}, schema=PAGES_SCHEMA))
    else:
        assert writer.write_pages(pages) == 3
    writer.write_fallbacks({("US", 4): stored_page(None, "US", 4)})
    writer.write_table("titles.parquet", titles_table())
    writer.write_table("profiles.parquet", profiles_table())
    writer.publish({"counts": {"profiles": 3}})


def test_serving_reads_the_page_store_as_it_read_the_json_layout(tmp_path) -> None:
    _publish(tmp_path, "v1", legacy=True)
    _publish(tmp_path, "v2", legacy=False)
    old, new = load_snapshot(tmp_path / "v1"), load_snapshot(tmp_path / "v2")
    assert isinstance(old.pages, dict) and not isinstance(new.pages, dict)  # v2: read per profile
    for pid in (1, 2, 3):
        assert new.page(pid).cell == old.page(pid).cell == "control"
        assert _same(new.page(pid).rows, old.page(pid).rows)
        assert new.profile(pid) == old.profile(pid)
    assert (new.profile(1).region, new.profile(2).is_kids, new.profile(3).region, new.profile(3).account_id) == ("US", True, "BR", 11)
    assert new.page(4) is None and new.profile(4) is not None  # a profile without a page
    assert new.page(99) is None and new.profile(99) is None
    assert new.profile(10**12) is None and new.page(10**12) is None  # past the int32 ids held in memory
    assert [pid for pid, _ in read_pages(tmp_path / "v2")] == [1, 2, 3]


def test_checksum_depends_on_content_not_on_write_order(tmp_path) -> None:
    pages = {pid: encode_page("control", _rows([[pid, pid + 1]], [[1.0, 0.5]])) for pid in range(1, 50)}
    a, b = SnapshotWriter(tmp_path, "a"), SnapshotWriter(tmp_path, "b")
    wa, wb = a.page_writer(), b.page_writer()
    wa.put_many(sorted(pages.items()))
    wb.put_many(sorted(pages.items(), reverse=True))
    wa.close(), wb.close()
    assert pages_checksum(a.staging / "pages.sqlite") == pages_checksum(b.staging / "pages.sqlite")
    c = SnapshotWriter(tmp_path, "c")
    wc = c.page_writer()
    wc.put_many({**pages, 7: encode_page("challenger", _rows([[7, 8]], [[1.0, 0.5]]))}.items())
    wc.close()
    assert pages_checksum(c.staging / "pages.sqlite") != pages_checksum(a.staging / "pages.sqlite")


def test_resumable_writer_keeps_committed_blocks(tmp_path) -> None:
    from pathways.pagestore import SqlitePageStore

    store = SqlitePageStore()
    first = store.writer(tmp_path, resumable=True)
    first.put_many([(1, b"a"), (2, b"b")])
    first.put_many([(3, b"c")])
    del first  # killed: never closed
    again = store.writer(tmp_path, resumable=True)
    assert again.profile_ids() == {1, 2, 3}
    again.put_many([(4, b"d")])
    assert again.close() == 4
    assert store.reader(tmp_path, "v").get(3) == b"c"
    assert store.writer(tmp_path).profile_ids() == set()  # not resumable: starts over


def test_encode_raw_is_encode_prepared_of_the_same_arrays() -> None:
    headers = [pageblob.header_json(RowHeader("genre:Comedy", "Because you like Comedy", "genre", "Évidence \"x\""))]
    offsets, ids, scores = np.array([0, 2]), np.array([7, 9], "<i4"), np.array([0.5, 0.25], "<f4")
    want = pageblob.encode_prepared("cell", headers, offsets, 0, ids, scores)
    assert pageblob.encode_raw("cell", headers, 0, 2, offsets.astype("<i4").tobytes(), ids.tobytes(),
                               scores.tobytes()) == want
    assert headers[0] == json.dumps(["genre:Comedy", "Because you like Comedy", "genre", "Évidence \"x\""],
                                    separators=(",", ":"))
