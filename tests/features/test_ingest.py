"""Ingestion: every rule's exact reason, accounting, idempotence, duplicates against the lake."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.ingest import IngestError, IngestReport, ingest, read_events, read_quarantine
from tests.conftest import make_titles
from tests.features.builders import T0, event, events_table, make_profiles

NOW = T0 + timedelta(days=3)

# (bad row, the exact reason it must get). Titles 100..159 have artwork variants 0..2.
BAD_ROWS = [
    (event(101, "teleport", 1, 100, 1), "unknown_event_type"),
    (event(2, "play", 99, 100, 1, fraction_watched=0.5), "unknown_profile_id"),
    (event(3, "play", 1, None, 1, fraction_watched=0.5), "missing_title_id"),
    (event(4, "impression", 1, 999, 1, row_index=0, position=0), "unknown_title_id"),
    (event(5, "search", 1, 999, 1, query="heat"), "unknown_title_id"),
    (event(6, "play", 1, 100, -24 * 365 * 30, fraction_watched=0.5), "ts_too_early"),
    (event(7, "play", 1, 100, 24 * 3 + 25, fraction_watched=0.5), "ts_in_future"),
    (event(8, "impression", 1, 100, 1, row_index=-1, position=0), "negative_row_index"),
    (event(9, "impression", 1, 100, 1, row_index=0, position=-3), "negative_position"),
    (event(10, "play", 1, 100, 1, fraction_watched=1.2), "fraction_out_of_range"),
    (event(11, "pause", 1, 100, 1, fraction_watched=-0.1), "fraction_out_of_range"),
    (event(12, "heartbeat", 1, 100, 1, position_s=-5.0), "negative_position_s"),
    (event(13, "rating", 1, 100, 1), "missing_rating"),
    (event(14, "rating", 1, 100, 1, rating=5.5), "rating_out_of_range"),
    (event(15, "rating", 1, 100, 1, rating=0.0), "rating_out_of_range"),
    (event(16, "artwork_impression", 1, 100, 1, artwork_id=1, propensity=0.0), "propensity_out_of_range"),
    (event(17, "artwork_impression", 1, 100, 1, artwork_id=1, propensity=1.5), "propensity_out_of_range"),
    (event(18, "artwork_impression", 1, 100, 1, artwork_id=1), "propensity_out_of_range"),
    (event(19, "artwork_impression", 1, 100, 1, artwork_id=7, propensity=0.3), "unknown_artwork_id"),
    (event(20, "artwork_click", 1, 100, 1), "unknown_artwork_id"),
    (event(1, "play", 1, 101, 1, fraction_watched=0.5), "duplicate_event_id"),  # id of a good row
    (event(22, "play", 1, 999, 1, fraction_watched=3.0), "unknown_title_id"),  # first rule wins
]
GOOD_ROWS = [
    event(1, "impression", 1, 100, 1, row_index=0, position=0),
    event(30, "play", 2, 101, 2, fraction_watched=1.0),
    event(31, "search", 3, None, 2, query="heat"),
    event(32, "heartbeat", 4, 102, 2, position_s=0.0),
    event(33, "rating", 5, 103, 2, rating=0.5),
    event(34, "artwork_impression", 6, 100, 2, artwork_id=2, propensity=1.0),
    event(35, "artwork_click", 6, 100, 2.1, artwork_id=2),
    event(36, "play", 1, 100, 24 * 3 + 23, fraction_watched=0.0),  # within a day of now
]


@pytest.fixture
def world() -> tuple[pa.Table, pa.Table]:
    return make_titles(), make_profiles()


def test_each_bad_row_gets_its_exact_reason(tmp_path, world):
    titles, profiles = world
    # The good row e1 comes first, so the later bad row with id e1 is the duplicate.
    rows = [GOOD_ROWS[0], *(r for r, _ in BAD_ROWS), *GOOD_ROWS[1:]]
    report = ingest(events_table(rows), titles, profiles, tmp_path, now=NOW)

    quarantine = read_quarantine(tmp_path)[0]
    got = list(zip(quarantine["event_id"].to_pylist(), quarantine["reason"].to_pylist()))
    assert got == [(r["event_id"], reason) for r, reason in BAD_ROWS]  # input order kept
    assert quarantine.column_names == [*events_table(rows).column_names, "reason"]
    assert (report.accepted, report.quarantined) == (len(GOOD_ROWS), len(BAD_ROWS))
    assert read_events(tmp_path)["event_id"].to_pylist() == [r["event_id"] for r in GOOD_ROWS]


def test_report_accounts_for_every_row(tmp_path, world):
    titles, profiles = world
    rows = [*GOOD_ROWS, *(r for r, _ in BAD_ROWS[1:5])]
    report = ingest(events_table(rows), titles, profiles, tmp_path, now=NOW)
    assert report.rows_in == len(rows) == report.accepted + report.quarantined
    assert sum(report.by_reason.values()) == report.quarantined == 4
    assert "quarantined" in str(report) and report.batch_id in str(report)
    with pytest.raises(AssertionError):
        IngestReport(rows_in=3, accepted=1, quarantined=1)


def test_reingesting_the_same_file_is_idempotent(tmp_path, world):
    titles, profiles = world
    path = tmp_path / "batch.parquet"
    pq.write_table(events_table([*GOOD_ROWS, BAD_ROWS[1][0]]), path)
    first = ingest(path, titles, profiles, tmp_path / "lake", now=NOW)
    files = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    second = ingest(path, titles, profiles, tmp_path / "lake", now=NOW)
    assert not first.already_ingested and second.already_ingested
    assert (second.accepted, second.quarantined, second.batch_id) == (
        first.accepted, first.quarantined, first.batch_id,
    )
    assert sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet")) == files
    assert read_events(tmp_path / "lake").num_rows == len(GOOD_ROWS)


def test_events_already_in_the_lake_are_duplicates(tmp_path, world):
    titles, profiles = world
    ingest(events_table(GOOD_ROWS[:3]), titles, profiles, tmp_path, now=NOW)
    again = [*GOOD_ROWS[1:3], event(50, "play", 1, 104, 3, fraction_watched=0.2)]
    report = ingest(events_table(again), titles, profiles, tmp_path, now=NOW)
    assert report.by_reason == {"duplicate_in_lake": 2}
    assert report.accepted == 1
    assert read_events(tmp_path).num_rows == 4


def test_bad_values_in_a_castable_column_are_quarantined_per_row(tmp_path, world):
    titles, profiles = world
    table = events_table(GOOD_ROWS[:3]).to_pandas()
    table["profile_id"] = ["1", "two", "3"]
    table["ts"] = ["2026-10-01T01:00:00Z", "2026-10-01T02:00:00Z", "yesterday"]
    report = ingest(pa.Table.from_pandas(table, preserve_index=False), titles, profiles, tmp_path, now=NOW)
    assert report.by_reason == {"bad_type:profile_id": 1, "bad_type:ts": 1}
    assert read_events(tmp_path).column("event_id").to_pylist() == ["e1"]


def test_a_pandas_index_column_is_ignored(tmp_path, world):
    titles, profiles = world
    frame = events_table(GOOD_ROWS[:3]).to_pandas().set_index("event_id", drop=False)
    report = ingest(pa.Table.from_pandas(frame), titles, profiles, tmp_path, now=NOW)
    assert report.accepted == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["ts"]), "missing required columns \\['ts'\\]"),
        (lambda t: t.append_column("colour", pa.array(["red"] * t.num_rows)), "unknown columns"),
        (
            lambda t: t.set_column(3, "profile_id", pa.array([[1]] * t.num_rows)),
            "column 'profile_id' has type list<",
        ),
        (
            lambda t: t.set_column(3, "profile_id", pa.array(["x"] * t.num_rows)),
            "none of its values read as int64",
        ),
    ],
)
def test_unreadable_files_are_rejected_with_the_file_and_column(tmp_path, world, change, message):
    titles, profiles = world
    path = tmp_path / "broken.parquet"
    pq.write_table(change(events_table(GOOD_ROWS[:3])), path)
    with pytest.raises(IngestError, match=f"broken.parquet.*{message}"):
        ingest(path, titles, profiles, tmp_path / "lake", now=NOW)
    assert not (tmp_path / "lake").exists()
