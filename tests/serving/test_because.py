"""The streamed "Because you watched" row: a play posted through the API puts a row anchored on it
on that profile's next page, built from the snapshot's similar-titles table under the hard rules.

Similar titles (``SIMILAR`` below) are chosen against the fixture catalog (``snapshot_fixtures``):
title 7 is licensed only in BR, titles 5, 10, 15, 20, 25, 30, 35 are mature (3), 40 adult (4),
1-4, 6, 8, 9 are for all (0), the rest teen (2).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pathways.catalog import Catalog
from pathways.snapshot import SIMILAR, SIMILAR_SCHEMA
from pathways.types import CompactRows, ProfileContext, RowHeader
from ranking.rules import violations
from serving.because import SimilarTitles, because_overlay, insert_row, load_similar
from serving.logic import build_service
from serving.playback import InMemoryPlaybackStore
from serving.snapshots import LoadedSnapshot
from tests.serving.snapshot_fixtures import (
    ADULT,
    BR_ADULT,
    BR_ONLY,
    KID,
    api_client,
    get_page,
    make_config,
    publish,
    titles_table,
)

SIMILAR_TO = {  # anchor -> similar titles, best first (33 itself listed: the row must drop it)
    33: [7, 33, 21, 5, 22, 23, 3, 24],
    3: [5, 4, 10, 6, 7, 8, 33],
    34: [26, 27, 28],
    6: [1, 2],
}


def similar_table(similar: dict[int, list[int]] = SIMILAR_TO) -> pa.Table:
    anchors = sorted(similar)
    return pa.table({
        "title_id": pa.array(anchors, pa.int64()),
        "similar_ids": pa.array([similar[a] for a in anchors], pa.list_(pa.int64())),
        "scores": pa.array([[1.0 - 0.01 * i for i in range(len(similar[a]))] for a in anchors], pa.list_(pa.float32())),
    }, schema=SIMILAR_SCHEMA)


def make_client(tmp_path: Path, with_table: bool = True):
    config = make_config(tmp_path, **{"page.row_length": 40})
    publish(config.snapshots_dir, "v1", config)
    if with_table:
        pq.write_table(similar_table(), config.snapshots_dir / "v1" / SIMILAR)
    service = build_service(config, playback=InMemoryPlaybackStore(), background_reload=False)
    return api_client(service), service


def post(client, *events: dict) -> None:
    r = client.post("/api/v1/events", json=list(events))
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == len(events)


def play(profile_id: int, title_id: int, **extra) -> dict:
    return {"event_type": "play", "profile_id": profile_id, "title_id": title_id, "fraction_watched": 0.3, **extra}


def because_rows(page: dict) -> list[dict]:
    return [r for r in page["rows"] if r["source"] == "because_you_watched"]


def ids(row: dict) -> list[int]:
    return [t["title_id"] for t in row["titles"]]


def test_a_posted_play_puts_its_row_right_after_continue_watching(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    before = get_page(client, ADULT)
    assert because_rows(before) == []  # no streamed play yet: the page is the snapshot's
    post(client, {"event_type": "complete", "profile_id": ADULT, "title_id": 22})  # finished
    post(client, play(ADULT, 33))
    page = get_page(client, ADULT)
    assert [r["source"] for r in page["rows"][:2]] == ["continue_watching", "because_you_watched"]
    row = page["rows"][1]
    assert (row["row_id"], row["title"]) == ("because_you_watched:33", "Because you watched Title 33")
    assert "Title 33" in row["evidence"]
    # the table's order, less the anchor (33), the finished title (22) and the US-unlicensed one (7)
    assert ids(row) == [21, 5, 23, 3, 24]
    assert len(because_rows(page)) == 1
    after = [r["row_id"] for r in page["rows"][2:] if r["source"] == "als"]
    assert after == [r["row_id"] for r in before["rows"] if r["row_id"] in after]  # the snapshot's rows, in order


def test_the_anchor_is_the_most_recent_play_and_rows_are_not_repeated(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    post(client, play(ADULT, 33))
    post(client, play(ADULT, 34))
    rows = because_rows(get_page(client, ADULT))
    assert [r["row_id"] for r in rows] == ["because_you_watched:34"] and ids(rows[0]) == [26, 27, 28]


def test_region_licence_holds_on_the_streamed_row(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    post(client, play(BR_ADULT, 33))
    row = because_rows(get_page(client, BR_ADULT))[0]
    assert ids(row)[0] == BR_ONLY  # licensed in BR: kept, in the table's order
    assert 22 in ids(row)  # not finished by this profile


def test_a_kids_profile_gets_only_titles_within_its_maturity(tmp_path: Path) -> None:
    client, service = make_client(tmp_path)
    catalog = service.pages.snapshots.state().snapshot.catalog
    post(client, play(KID, 3))
    page = get_page(client, KID)
    row = because_rows(page)[0]
    assert row["title"] == "Because you watched Title 3"
    assert ids(row) == [4, 6, 8]  # 5 and 10 are mature, 7 BR-only, 33 teen
    for r in page["rows"]:
        assert violations(catalog, ids(r), "US", 1) == []


def test_a_kids_profile_playing_a_title_above_its_ceiling_gets_no_row_naming_it(tmp_path: Path) -> None:
    client, _ = make_client(tmp_path)
    post(client, play(KID, 6))
    post(client, play(KID, 34))  # teen, above the kids ceiling: the most recent play, but not an anchor
    rows = because_rows(get_page(client, KID))
    assert [r["row_id"] for r in rows] == ["because_you_watched:6"] and ids(rows[0]) == [1, 2]


def test_a_snapshot_without_the_table_serves_the_page_unchanged(tmp_path: Path) -> None:
    client, service = make_client(tmp_path, with_table=False)
    assert service.pages.snapshots.state().snapshot.similar is None
    post(client, play(ADULT, 33))
    page = get_page(client, ADULT)
    assert page["personalized"] and because_rows(page) == []
    assert page["rows"][0]["source"] == "continue_watching"


def test_an_unreadable_table_is_no_table(tmp_path: Path) -> None:
    (tmp_path / SIMILAR).write_bytes(b"not parquet")
    assert load_similar(tmp_path) is None
    assert load_similar(tmp_path / "missing") is None


def test_the_table_loads_as_sorted_offsets(tmp_path: Path) -> None:
    pq.write_table(similar_table().take([3, 0, 2, 1]), tmp_path / SIMILAR)
    similar = load_similar(tmp_path)
    assert similar is not None and similar.anchors.tolist() == [3, 6, 33, 34]
    got = similar.get(33)
    assert got is not None and got[0].tolist() == SIMILAR_TO[33] and got[1].dtype == np.float32
    assert similar.get(99) is None and similar.get(0) is None


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.from_table(titles_table())


def page_rows(*rows: tuple[str, str, list[int]]) -> CompactRows:
    headers = [RowHeader(rid, rid, source, "") for rid, source, _ in rows]
    return CompactRows.build(headers, [np.array(t, np.int64) for *_, t in rows],
                             [np.linspace(1, 0, len(t)) for *_, t in rows])


def test_the_row_replaces_the_snapshots_row_for_the_same_anchor(catalog: Catalog) -> None:
    rows = page_rows(("continue_watching", "continue_watching", [12]), ("als:0", "als", [1, 2]),
                     ("because_you_watched:33", "because_you_watched", [9, 8]), ("als:1", "als", [4]))
    similar = SimilarTitles(np.array([33]), np.array([0, 3]), np.array([21, 23, 24]), np.array([0.9, 0.8, 0.7], np.float32))
    snapshot = cast("LoadedSnapshot", SimpleNamespace(similar=similar, catalog=catalog))  # the two parts it reads
    profile = ProfileContext(ADULT, region="US", max_maturity_level=4)
    out = because_overlay(rows, snapshot, profile, lambda pid: (33,), None, row_length=2)
    assert [h.row_id for h in out.headers] == ["continue_watching", "because_you_watched:33", "als:0", "als:1"]
    assert [r.tolist() for r in out.ids_per_row()] == [[12], [21, 23], [1, 2], [4]]  # at most row_length
    assert out.scores[1:3].tolist() == pytest.approx([0.9, 0.8])
    nothing = because_overlay(rows, snapshot, profile, lambda pid: (), None, row_length=2)
    assert nothing is rows  # no streamed play: unchanged


def test_without_continue_watching_the_row_comes_first(catalog: Catalog) -> None:
    rows = page_rows(("als:0", "als", [1, 2]))
    header = RowHeader("because_you_watched:3", "t", "because_you_watched", "e")
    out = insert_row(rows, header, np.array([4, 6]), np.array([0.5, 0.25]))
    assert [h.row_id for h in out.headers] == ["because_you_watched:3", "als:0"]
    assert out.offsets.tolist() == [0, 2, 4] and out.title_ids.tolist() == [4, 6, 1, 2]
