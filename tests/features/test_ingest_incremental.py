"""The nightly's incremental ingest: new files only, a bounded duplicate check, bad files set aside."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import features.lake_index as lake_index
from features.ingest import file_batch_id, read_events
from features.ingest_nightly import ingest_new
from tests.conftest import make_titles
from tests.features.builders import T0, event, events_table, make_profiles

NOW = T0 + timedelta(days=30)


def day_file(path: Path, day: int, n: int, start: int = 0) -> Path:
    rows = [event(start + i, "play", 1 + i % 5, 100 + i % 7, hours=24 * day + i * 0.1, fraction_watched=0.5)
            for i in range(n)]
    pq.write_table(events_table(rows), path)
    return path


def test_only_new_files_are_read(tmp_path: Path, monkeypatch) -> None:
    titles, profiles = make_titles(), make_profiles()
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    first = [day_file(raw / "d0.parquet", 0, 20), day_file(raw / "d1.parquet", 1, 20, start=100)]
    totals = ingest_new(first, titles, profiles, lake, now=NOW)
    assert (totals["files"], totals["accepted"], totals["already_ingested"]) == (2, 40, 0)

    read: list[str] = []
    real = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda p, *a, **k: (read.append(str(p)), real(p, *a, **k))[1])
    new = day_file(raw / "d2.parquet", 2, 20, start=200)
    totals = ingest_new([*first, new], titles, profiles, lake, now=NOW)
    assert (totals["files"], totals["accepted"], totals["already_ingested"]) == (1, 20, 2)
    untouched = (str(first[0]), str(first[1]), "date=2026-10-01")  # old files, and days before the window
    assert read and not any(u in p for p in read for u in untouched)
    assert read_events(lake).num_rows == 60


def test_duplicates_are_checked_against_the_events_days_only(tmp_path: Path, monkeypatch) -> None:
    titles, profiles = make_titles(), make_profiles()
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    ingest_new([day_file(raw / "a.parquet", 0, 10), day_file(raw / "b.parquet", 9, 10, start=50)], titles, profiles, lake, now=NOW)
    loaded: list[str] = []
    real = lake_index.partition_dir
    monkeypatch.setattr(lake_index, "partition_dir", lambda lake_dir, day: (loaded.append(str(day)), real(lake_dir, day))[1])
    retry = day_file(raw / "retry.parquet", 9, 3, start=50)  # the same three events of day 9, again
    totals = ingest_new([retry], titles, profiles, lake, now=NOW)
    assert totals["by_reason"] == {"duplicate_in_lake": 3} and totals["accepted"] == 0
    assert set(loaded) <= {"2026-10-10", "2026-10-09"}  # the event's day and one before, never day 0


def test_an_id_is_a_duplicate_only_within_dedupe_days_after_its_day_in_the_lake(tmp_path: Path) -> None:
    """dedupe_days=1: an id re-sent on its lake day or the day after is a duplicate; two days after,
    or a day before, it is a new event (one file spanning the days, as the world's week does)."""
    titles, profiles = make_titles(), make_profiles()
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    first = [event(i, "play", 1, 100, hours=24 * 5 + i, fraction_watched=0.5) for i in range(4)]  # e0..e3 on day 5
    pq.write_table(events_table(first), raw / "first.parquet")
    ingest_new([raw / "first.parquet"], titles, profiles, lake, now=NOW, dedupe_days=1)
    again = [event(0, "play", 2, 101, hours=24 * 5 + 9, fraction_watched=0.5),  # the same day
             event(1, "play", 2, 101, hours=24 * 6 + 1, fraction_watched=0.5),  # the next day
             event(2, "play", 2, 101, hours=24 * 7 + 1, fraction_watched=0.5),  # two days after: new
             event(3, "play", 2, 101, hours=24 * 4 + 1, fraction_watched=0.5),  # the day before: new
             event(9, "play", 2, 101, hours=24 * 6 + 2, fraction_watched=0.5)]  # an id never seen
    pq.write_table(events_table(again), raw / "again.parquet")
    totals = ingest_new([raw / "again.parquet"], titles, profiles, lake, now=NOW, dedupe_days=1)
    assert totals["by_reason"] == {"duplicate_in_lake": 2} and totals["accepted"] == 3
    kept = read_events(lake).filter(pa.compute.equal(read_events(lake)["profile_id"], 2))
    assert sorted(kept["event_id"].to_pylist()) == ["e2", "e3", "e9"]


def test_a_malformed_file_is_set_aside_and_the_night_goes_on(tmp_path: Path) -> None:
    titles, profiles = make_titles(), make_profiles()
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    broken = raw / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    wrong = raw / "wrong.parquet"
    pq.write_table(pa.table({"colour": ["red"]}), wrong)
    good = day_file(raw / "good.parquet", 0, 5)
    totals = ingest_new([broken, wrong, good], titles, profiles, lake, now=NOW)
    assert totals["rejected_files"] == 2 and totals["accepted"] == 5
    assert not broken.exists() and not wrong.exists()
    reports = sorted((lake / "rejected").glob("*.report.json"))
    assert len(reports) == 2 and "not a readable Parquet file" in reports[0].read_text() + reports[1].read_text()


def test_a_large_file_is_landed_chunk_by_chunk_with_the_same_events(tmp_path: Path) -> None:
    titles, profiles = make_titles(), make_profiles()
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [event(i, "play", 1 + i % 5, 100 + i % 7, hours=i * 0.7, fraction_watched=0.5) for i in range(40)]
    rows += [event(3, "play", 1, 100, hours=2.1, fraction_watched=0.5), event(41, "play", 99, 100, hours=1)]  # a dup, an unknown profile
    pq.write_table(events_table(rows), raw / "big.parquet")
    whole = ingest_new([raw / "big.parquet"], titles, profiles, tmp_path / "whole", now=NOW)
    chunked = ingest_new([raw / "big.parquet"], titles, profiles, tmp_path / "chunked", now=NOW, chunk_rows=9)
    assert (chunked["rows_in"], chunked["accepted"], chunked["quarantined"]) == (whole["rows_in"], whole["accepted"], 2)
    assert set(chunked["by_reason"]) == {"unknown_profile_id", "duplicate_in_lake"}  # the dup sits in a later chunk
    by_id = lambda t: t.sort_by("event_id")  # noqa: E731
    assert by_id(read_events(tmp_path / "chunked")).equals(by_id(read_events(tmp_path / "whole")))
    assert len(list((tmp_path / "chunked" / "batches").glob("*-c*.json"))) == 5
    again = ingest_new([raw / "big.parquet"], titles, profiles, tmp_path / "chunked", now=NOW, chunk_rows=9)
    assert again["already_ingested"] == 1 and again["accepted"] == 0


def test_colliding_id_hashes_never_make_distinct_ids_duplicates(tmp_path: Path, monkeypatch) -> None:
    """The index keeps 64-bit hashes; with every hash forced to collide, only equal ids are duplicates."""
    import numpy as np

    import features.ingest as ingest_module

    real = lake_index.id_hashes
    for module in (lake_index, ingest_module):  # the index's and the batch's own duplicate checks
        monkeypatch.setattr(module, "id_hashes", lambda ids, step=1 << 20: np.zeros(len(real(ids)), np.uint64))
    titles, profiles = make_titles(), make_profiles()
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    ingest_new([day_file(raw / "a.parquet", 3, 12)], titles, profiles, lake, now=NOW)
    mixed = day_file(raw / "mixed.parquet", 3, 12, start=6)  # ids 6..11 are in the lake, 12..17 are new
    totals = ingest_new([mixed], titles, profiles, lake, now=NOW)
    assert totals["by_reason"] == {"duplicate_in_lake": 6} and totals["accepted"] == 6
    assert read_events(lake).num_rows == 18
    repeated = pq.read_table(day_file(raw / "r.parquet", 4, 3, start=30))
    pq.write_table(pa.concat_tables([repeated, repeated.slice(1, 1)]), raw / "r.parquet")  # id 31 twice
    totals = ingest_new([raw / "r.parquet"], titles, profiles, lake, now=NOW)
    assert totals["by_reason"] == {"duplicate_event_id": 1} and totals["accepted"] == 3


def test_known_ids_are_held_as_hashes_not_strings(tmp_path: Path) -> None:
    titles, profiles = make_titles(), make_profiles()
    raw, lake = tmp_path / "raw", tmp_path / "lake"
    raw.mkdir()
    ingest_new([day_file(raw / "a.parquet", 3, 500)], titles, profiles, lake, now=NOW)
    index = lake_index.EventIdIndex(lake)
    events = read_events(lake)
    assert index.duplicates(events["event_id"], events["ts"]).all()
    assert index.nbytes() == 20 * 500  # 8-byte hash + 4-byte row per id in its file, 8-byte hash in its day's merge
    other = pa.array([f"x{i}" for i in range(500)])
    assert not index.duplicates(other, events["ts"]).any()


def test_a_file_landed_in_many_chunks_is_searched_once_per_day_not_once_per_file(tmp_path: Path, monkeypatch) -> None:
    """Each chunk writes a file per day; the chunks after it are checked against each day's merged
    hashes, and only hash matches go file by file (a duplicate in a late chunk is still found)."""
    import numpy as np

    titles, profiles = make_titles(), make_profiles()
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [event(i, "play", 1 + i % 5, 100 + i % 7, hours=i * 1.3, fraction_watched=0.5) for i in range(120)]
    rows += [event(7, "play", 3, 100, hours=7 * 1.3, fraction_watched=0.5)]  # a dup of chunk 0's event 7, in the last chunk
    pq.write_table(events_table(rows), raw / "big.parquet")
    confirmed: list[int] = []
    real = lake_index.EventIdIndex._confirm
    monkeypatch.setattr(lake_index.EventIdIndex, "_confirm",
                        staticmethod(lambda ids, hashes, files: (confirmed.append(len(ids)), real(ids, hashes, files))[1]))
    totals = ingest_new([raw / "big.parquet"], titles, profiles, tmp_path / "lake", now=NOW, chunk_rows=10)
    assert totals["by_reason"] == {"duplicate_in_lake": 1} and totals["accepted"] == 120
    assert confirmed == [1]  # only the one id whose hash is in the lake went to the files
    index = lake_index.EventIdIndex(tmp_path / "lake")
    events = read_events(tmp_path / "lake")
    assert index.duplicates(events["event_id"], events["ts"]).all()
    merged = index._merged
    assert merged and all(np.all(m[1:] >= m[:-1]) for m in merged.values())


def test_a_chunked_file_spanning_a_week_reads_each_day_of_the_lake_once(tmp_path: Path, monkeypatch) -> None:
    """Every chunk of a week-long file touches all its days: none of them may be forgotten and read
    back from disk for the next chunk (that made a 1M-profile world's ingest quadratic)."""
    titles, profiles = make_titles(), make_profiles()
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [event(i, "play", 1 + i % 5, 100 + i % 7, hours=(i % 8) * 24 + i * 0.01, fraction_watched=0.5) for i in range(96)]
    pq.write_table(events_table(rows), raw / "week.parquet")
    read: list[str] = []
    real = lake_index._FileIds.read
    monkeypatch.setattr(lake_index._FileIds, "read", classmethod(lambda cls, path: (read.append(str(path)), real(path))[1]))
    totals = ingest_new([raw / "week.parquet"], titles, profiles, tmp_path / "lake", now=NOW, chunk_rows=12)
    assert totals["accepted"] == 96
    assert read == []  # every file the index knows it learnt when writing it, none read back


def test_a_chunk_is_checked_against_the_one_still_being_written(tmp_path: Path, monkeypatch) -> None:
    """Chunk k is written on a thread while chunk k+1 is checked: its ids come from memory until its
    files exist. Every write here waits for the next chunk's check, and every hash collides, so the
    duplicates (and the distinct ids) can only be told apart by the unwritten chunk's ids."""
    import threading

    import numpy as np

    import features.ingest as ingest_module

    real_hashes = lake_index.id_hashes
    for module in (lake_index, ingest_module):
        monkeypatch.setattr(module, "id_hashes", lambda ids, step=1 << 20: np.zeros(len(real_hashes(ids)), np.uint64))
    checks, written_before_check, cond = [0], [], threading.Condition()
    real_check, real_write = ingest_module._check, ingest_module._write

    def check(raw, titles, profiles, batch_id, now, name, index):
        written_before_check.append(sorted(p.name for p in (tmp_path / "lake" / "events").rglob("part-*.parquet")))
        out = real_check(raw, titles, profiles, batch_id, now, name, index)
        with cond:
            checks[0] += 1
            cond.notify_all()
        return out

    def write(checked, lake_dir):
        k = int(checked.batch_id.rsplit("-c", 1)[1])
        with cond:
            assert cond.wait_for(lambda: checks[0] >= min(k + 2, 3), timeout=30)
        return real_write(checked, lake_dir)

    monkeypatch.setattr(ingest_module, "_check", check)
    monkeypatch.setattr(ingest_module, "_write", write)
    titles, profiles = make_titles(), make_profiles()
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [event(i, "play", 1 + i % 5, 100 + i % 7, hours=i * 0.5, fraction_watched=0.5) for i in range(20)]
    rows += [event(3, "play", 1, 100, hours=1.5, fraction_watched=0.5)]  # chunk 0's id 3 again, in chunk 2
    rows += [event(9, "play", 2, 101, hours=4.5, fraction_watched=0.5)]  # chunk 1's id 9 again, in chunk 2
    pq.write_table(events_table(rows), raw / "big.parquet")
    totals = ingest_new([raw / "big.parquet"], titles, profiles, tmp_path / "lake", now=NOW, chunk_rows=8)
    assert totals["by_reason"] == {"duplicate_in_lake": 2} and totals["accepted"] == 20
    assert written_before_check[1] == [] and all("c00001" not in p for p in written_before_check[2])
    assert sorted(read_events(tmp_path / "lake")["event_id"].to_pylist()) == sorted(f"e{i}" for i in range(20))


def test_a_chunk_whose_write_fails_leaves_the_chunks_before_it_done_and_none_after(tmp_path: Path, monkeypatch) -> None:
    import features.ingest as ingest_module

    titles, profiles = make_titles(), make_profiles()
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [event(i, "play", 1 + i % 5, 100 + i % 7, hours=i * 0.5, fraction_watched=0.5) for i in range(30)]
    rows += [event(2, "play", 1, 100, hours=1.0, fraction_watched=0.5)]  # a dup of chunk 0's id 2, in the last chunk
    pq.write_table(events_table(rows), raw / "big.parquet")
    real_write = ingest_module.write_partitioned

    def failing(table, lake_dir, batch_id):
        if batch_id.endswith("-c00001"):
            raise OSError("disk full")
        return real_write(table, lake_dir, batch_id)

    monkeypatch.setattr(ingest_module, "write_partitioned", failing)
    lake = tmp_path / "lake"
    try:
        ingest_new([raw / "big.parquet"], titles, profiles, lake, now=NOW, chunk_rows=8)
    except OSError as exc:
        assert "disk full" in str(exc)
    else:
        raise AssertionError("the failed write must stop the ingest")
    assert sorted(p.name for p in (lake / "batches").glob("*.json")) == [f"{file_batch_id(raw / 'big.parquet')}-c00000.json"]
    assert all("c00000" in p.name for p in (lake / "events").rglob("*.parquet"))  # nothing of the chunks after it
    monkeypatch.setattr(ingest_module, "write_partitioned", real_write)
    totals = ingest_new([raw / "big.parquet"], titles, profiles, lake, now=NOW, chunk_rows=8)
    assert totals["by_reason"] == {"duplicate_in_lake": 1} and totals["accepted"] == 30
    assert sorted(read_events(lake)["event_id"].to_pylist()) == sorted(f"e{i}" for i in range(30))


def test_id_hashes_follow_the_ids_in_order_on_any_thread() -> None:
    """Equal ids, equal hashes; 200k distinct ids, no collision; row i's hash is id i's (also
    reversed, chunked, sliced, and from two threads at once, each with its own connection)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    ids = pa.array([f"w1-b{i % 7}-e{i}" for i in range(200_000)])
    h = lake_index.id_hashes(ids)
    assert h.dtype == np.uint64 and len(np.unique(h)) == len(ids)
    np.testing.assert_array_equal(lake_index.id_hashes(ids[::-1]), h[::-1])
    np.testing.assert_array_equal(lake_index.id_hashes(pa.chunked_array([ids[:5], ids[5:]])), h)
    np.testing.assert_array_equal(lake_index.id_hashes(ids.slice(1000, 10)), h[1000:1010])
    again = lake_index.id_hashes(pa.array(["w1-b0-e0", "w1-b0-e0", "w1-b1-e1"]))
    assert again[0] == again[1] == h[0] and again[2] == h[1]
    assert len(lake_index.id_hashes(pa.array([], pa.string()))) == 0
    with ThreadPoolExecutor(2) as pool:
        for i, got in enumerate(pool.map(lake_index.id_hashes, [ids, ids[::-1]] * 3)):
            np.testing.assert_array_equal(got, h[::-1] if i % 2 else h)
