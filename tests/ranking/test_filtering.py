"""RowFilter: the one filter of hard rules and de-duplication, and parity between the page
assembler (nightly) and the serving overlay that both go through it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathways.catalog import Catalog
from pathways.config import PageConfig
from pathways.types import Candidates, CompactRows, ProfileContext, RowHeader
from ranking.filtering import RowFilter
from ranking.page import assemble_page
from serving.overlay import enforce_rows
from tests.conftest import make_titles

CATALOG = Catalog.from_table(make_titles())  # ids 100..159; 100, 105, ... mature (3); 100, 107, ... BR only
ADULT_US = ProfileContext(1, "US", 4)


def test_admit_applies_the_rules_and_keeps_the_first_occurrence():
    rows = [
        np.array([101, 102, 101, 100, 107, 9999, 103], np.int64),  # repeat, BR-only 100/107, unknown 9999
        np.array([], np.int64),
        np.array([104, 104, 104], np.int64),
    ]
    kept = RowFilter(CATALOG, ADULT_US, dedupe_top_rows=10).admit(rows)
    assert [rows[r][k].tolist() for r, k in enumerate(kept)] == [[101, 102, 103], [], [104]]
    assert kept[0].tolist() == [0, 1, 6]  # positions in the input row, in order


def test_admit_drops_finished_and_too_mature_titles():
    kid = ProfileContext(2, "US", 1, finished=frozenset({103}))
    (kept,) = RowFilter(CATALOG, kid, dedupe_top_rows=10).admit([np.array([101, 102, 103, 105, 106], np.int64)])
    assert kept.tolist() == [4]  # 101, 102 teen (2), 103 finished, 105 mature: only 106 ("all")


def test_titles_placed_in_the_top_rows_are_unseen_only_until_the_limit():
    f = RowFilter(CATALOG, ADULT_US, dedupe_top_rows=2)
    ids = np.array([101, 102, 103], np.int64)
    assert f.unseen(ids).tolist() == [True, True, True]
    f.place(np.array([101], np.int64))
    assert f.unseen(ids).tolist() == [False, True, True]
    f.place(np.array([102], np.int64))  # the second top row
    assert f.placed == 2
    assert f.unseen(ids).tolist() == [True, True, True]  # past the top rows: repeats allowed


def test_filter_rows_drops_emptied_rows_and_stops_at_row_count():
    rows = [np.array([101, 102], np.int64), np.array([102, 101], np.int64), np.array([103], np.int64), np.array([104], np.int64)]
    out = RowFilter(CATALOG, ADULT_US, dedupe_top_rows=10).filter_rows(rows, row_count=2)
    assert [(r, k.tolist()) for r, k in out] == [(0, [0, 1]), (2, [0])]


def test_negative_dedupe_is_rejected():
    with pytest.raises(ValueError, match="dedupe_top_rows must be >= 0"):
        RowFilter(CATALOG, ADULT_US, dedupe_top_rows=-1)


def _compact(rows: list[Candidates]) -> CompactRows:
    headers = [RowHeader(c.row_id, c.evidence, c.source, c.evidence) for c in rows]
    return CompactRows.build(headers, [c.title_ids for c in rows], [c.scores for c in rows])


candidate_rows = st.lists(
    st.lists(st.integers(95, 165), min_size=0, max_size=12), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(rows=candidate_rows, region=st.sampled_from(["US", "BR", "GB"]), level=st.integers(0, 4),
       finished=st.frozensets(st.integers(100, 159), max_size=5), dedupe=st.integers(0, 12), row_count=st.integers(1, 12))
def test_assembler_and_serving_overlay_give_the_same_rows(rows, region, level, finished, dedupe, row_count):
    """Candidate rows (with forbidden titles and repeats) in the order the assembler placed them:
    the serving overlay keeps exactly the titles the assembler kept (rows no longer than
    ``row_length`` and ``min_row_length`` 1, so choosing and truncating play no part); and the
    overlay leaves an assembled page unchanged."""
    profile = ProfileContext(7, region, level, finished=finished)
    cands = [Candidates("als", np.array(r, np.int64), np.linspace(1.0, 0.0, len(r)), key=str(i)) for i, r in enumerate(rows)]
    cfg = PageConfig(max_rows=row_count, row_length=12, dedupe_top_rows=dedupe, min_row_length=1)
    page = assemble_page(cands, profile, CATALOG, cfg)
    by_id = {c.row_id: c for c in cands}
    placed = [by_id[r.row_id] for r in page.rows]

    served = enforce_rows(_compact(placed), CATALOG, profile, dedupe_top_rows=dedupe, row_count=row_count)
    assert [h.row_id for h in served.headers] == [r.row_id for r in page.rows]
    assert [served.row(i)[0].tolist() for i in range(len(served))] == [[t.title_id for t in r.titles] for r in page.rows]

    again = enforce_rows(page.compact_rows(), CATALOG, profile, dedupe_top_rows=dedupe, row_count=row_count)
    assert again.headers == page.compact_rows().headers
    assert again.title_ids.tolist() == page.compact_rows().title_ids.tolist()
