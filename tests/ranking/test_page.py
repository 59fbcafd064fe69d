"""Page assembly: hard rules, de-duplication across the first rows, ordering, pinned rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathways.catalog import Catalog
from pathways.config import ConfigError, PageConfig, PathwaysConfig
from pathways.types import Candidates, ProfileContext
from ranking.page import assemble_page, page_title_ids
from ranking.rules import violations
from tests.conftest import make_titles

CATALOG = Catalog.from_table(make_titles())
ALL_IDS = CATALOG.title_ids


def _row(source: str, ids, key: str = "", scores=None) -> Candidates:
    ids = np.asarray(ids, np.int64)
    scores = np.linspace(1.0, 0.1, len(ids)) if scores is None else np.asarray(scores)
    return Candidates(source, ids, scores, evidence=f"{source} {key}".strip(), key=key).sorted()


def test_kids_profile_in_us_never_sees_mature_or_unlicensed_titles():
    kid = ProfileContext(1, "US", 1, is_kids=True)
    rows = [_row("als", ALL_IDS), _row("trending", ALL_IDS[::-1]), _row("genre", ALL_IDS[::2], "Comedy")]
    page = assemble_page(rows, kid, CATALOG, PageConfig(min_row_length=1))
    ids = page_title_ids(page)
    assert ids, "expected some titles for a kid in the US"
    assert violations(CATALOG, ids, "US", 1) == []


def test_no_title_repeats_in_first_rows_but_later_rows_may_repeat():
    adult = ProfileContext(2, "BR", 4)
    rows = [_row("src", ALL_IDS[:20], key=str(k)) for k in range(14)]
    cfg = PageConfig(dedupe_top_rows=3, min_row_length=1, row_length=5)
    page = assemble_page(rows, adult, CATALOG, cfg)
    top = page_title_ids(page, first_rows=3)
    assert len(top) == len(set(top))
    assert len(page.rows) > 3  # rows beyond the de-duplicated band are still filled
    later = page_title_ids(page)[len(top):]
    assert set(later) & set(top), "beyond the first rows titles may repeat"


def test_finished_titles_are_removed_and_continue_watching_is_pinned_first():
    finished = frozenset(int(t) for t in ALL_IDS[1:4])
    p = ProfileContext(3, "BR", 4, finished=finished)
    rows = [_row("als", ALL_IDS, scores=np.linspace(9, 1, len(ALL_IDS))), _row("continue_watching", ALL_IDS[10:12], scores=[0.01, 0.0])]
    page = assemble_page(rows, p, CATALOG, PageConfig(min_row_length=1))
    assert page.rows[0].source == "continue_watching"
    assert not finished & set(page_title_ids(page))


def test_pinned_sources_come_from_the_config_in_its_order():
    p = ProfileContext(3, "BR", 4)
    rows = [_row("als", ALL_IDS[:20], scores=np.full(20, 9.0)), _row("continue_watching", ALL_IDS[20:22]),
            _row("top_picks", ALL_IDS[30:40], scores=np.full(10, -9.0))]
    default = assemble_page(rows, p, CATALOG, PageConfig(min_row_length=1))
    assert [r.source for r in default.rows] == ["continue_watching", "top_picks", "als"]
    swapped = assemble_page(rows, p, CATALOG, PageConfig(min_row_length=1, pinned_sources=("top_picks", "continue_watching")))
    assert [r.source for r in swapped.rows] == ["top_picks", "continue_watching", "als"]
    unpinned = assemble_page(rows, p, CATALOG, PageConfig(min_row_length=1, pinned_sources=()))
    assert unpinned.rows[0].source == "als"  # scored like any row: the best scores first


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"page.pinned_sources": ["continue_watching", "toppicks"]}, "unknown row source(s) ['toppicks']"),
        ({"page.pinned_sources": ["top_picks", "top_picks"]}, "pinned_sources repeats a source"),
        ({"page.source_weight": -0.1}, "page.source_weight: Input should be greater than or equal to 0"),
    ],
)
def test_bad_page_settings_are_rejected_with_the_reason(overrides, message):
    with pytest.raises(ConfigError) as err:
        PathwaysConfig().with_overrides(overrides)
    assert message in str(err.value)


def test_rows_shorter_than_min_length_are_dropped_when_the_catalog_has_more():
    p = ProfileContext(4, "BR", 4)
    rows = [_row("als", ALL_IDS[:30], scores=np.full(30, 3.0)), _row("genre", ALL_IDS[:32], key="dup")]
    page = assemble_page(rows, p, CATALOG, PageConfig(min_row_length=5, dedupe_top_rows=10))
    # the genre row loses 30 of its 32 titles to the ALS row above it: 2 left < 5
    assert [r.source for r in page.rows] == ["als"]


def test_diversity_prefers_a_new_source_over_a_second_row_of_the_same_source():
    p = ProfileContext(5, "BR", 4)
    a1 = _row("byw", ALL_IDS[:10], key="a", scores=np.full(10, 2.0))
    a2 = _row("byw", ALL_IDS[10:20], key="b", scores=np.full(10, 1.9))
    b = _row("trending", ALL_IDS[20:30], scores=np.full(10, 1.8))
    page = assemble_page([a1, a2, b], p, CATALOG, PageConfig(min_row_length=1, diversity_weight=0.5))
    assert [r.row_id for r in page.rows] == ["byw:a", "trending", "byw:b"]
    page = assemble_page([a1, a2, b], p, CATALOG, PageConfig(min_row_length=1, diversity_weight=0.0))
    assert [r.row_id for r in page.rows] == ["byw:a", "byw:b", "trending"]


def test_row_count_and_row_length_are_respected():
    p = ProfileContext(6, "BR", 4)
    rows = [_row("s", ALL_IDS, key=str(k)) for k in range(8)]
    page = assemble_page(rows, p, CATALOG, PageConfig(row_length=7, min_row_length=1, dedupe_top_rows=0), row_count=5)
    assert len(page.rows) == 5 and all(len(r.titles) == 7 for r in page.rows)


@settings(max_examples=40, deadline=None)
@given(
    region=st.sampled_from(["US", "BR", "GB", "JP"]),
    maturity=st.integers(0, 4),
    seed=st.integers(0, 10_000),
    n_rows=st.integers(0, 12),
    finished_n=st.integers(0, 10),
)
def test_property_no_rule_broken_no_repeat_in_first_10_rows(region, maturity, seed, n_rows, finished_n):
    rng = np.random.default_rng(seed)
    finished = frozenset(int(t) for t in rng.choice(ALL_IDS, finished_n, replace=False))
    p = ProfileContext(7, region, maturity, finished=finished)
    rows = []
    for k in range(n_rows):
        ids = rng.choice(np.append(ALL_IDS, [99_999]), size=int(rng.integers(1, 40)))  # dupes + an unknown id
        rows.append(_row(["als", "trending", "genre"][k % 3], ids, key=str(k), scores=rng.normal(size=len(ids))))
    page = assemble_page(rows, p, CATALOG, PageConfig(min_row_length=1))
    ids = page_title_ids(page)
    assert violations(CATALOG, ids, region, maturity, set(finished)) == []
    top = page_title_ids(page, first_rows=10)
    assert len(top) == len(set(top))
    for r in page.rows:
        row_ids = [t.title_id for t in r.titles]
        assert len(row_ids) == len(set(row_ids))
        assert [t.score for t in r.titles] == sorted((t.score for t in r.titles), reverse=True)
