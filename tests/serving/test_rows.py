"""Compact rows: parity with ``Page``/``TitleCard`` JSON, and properties of ``enforce_rows``."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.history import PlaybackState
from pathways.catalog import Catalog
from pathways.types import CompactRows, Page, ProfileContext, RowHeader
from ranking.rules import violations
from serving.overlay import enforce_rows, overlay_playback
from serving.rows import TitleRenderer, parse_pages
from tests.serving.snapshot_fixtures import ADULT, KID, N_TITLES, stored_page, titles_table

CATALOG = Catalog.from_table(titles_table())
RENDERER = TitleRenderer(CATALOG)


def test_rendered_json_equals_the_page_objects_json(service):
    for pid in (ADULT, KID, 777):
        served = service.pages.get_page(pid, 12)
        body = json.loads(served.to_json())
        assert body["rows"] == [r.to_dict() for r in served.page.rows]
        assert body["personalized"] == served.page.personalized and body["cell"] == served.page.cell


def test_stored_page_round_trips_through_compact_rows():
    page = stored_page(ADULT, "US", 4, n_rows=5)
    rows = CompactRows.from_json(json.dumps(page.to_dict()))
    art = np.array([c.artwork_id for r in page.rows for c in r.titles])
    props = np.ones(len(art))
    assert rows.to_rows(CATALOG, art, props) == Page.from_dict(page.to_dict()).rows  # scores as served
    assert page.compact_rows().title_ids.tolist() == rows.title_ids.tolist()
    assert page.compact_rows().headers == rows.headers == tuple(r.header for r in page.rows)
    assert rows.positions().tolist() == [j for r in page.rows for j in range(len(r.titles))]


def test_vectorized_positions_match_the_catalog():
    ids = np.array([3, 999, 1, 40, -5, 17], dtype=np.int64)
    assert RENDERER.positions(ids).tolist() == CATALOG.positions(ids).tolist()


row_lists = st.lists(st.lists(st.integers(1, N_TITLES + 3), min_size=0, max_size=12), min_size=0, max_size=14)


@settings(max_examples=60, deadline=None)
@given(rows=row_lists, level=st.integers(0, 4), region=st.sampled_from(["US", "BR", "GB"]),
       finished=st.frozensets(st.integers(1, N_TITLES), max_size=6), row_count=st.integers(1, 14),
       dedupe=st.integers(0, 12))
def test_enforce_rows_never_breaks_a_rule(rows, level, region, finished, row_count, dedupe):
    headers = [RowHeader(f"r{i}", f"Row {i}", "src", "") for i in range(len(rows))]
    page = CompactRows.build(headers, [np.array(r, dtype=np.int64) for r in rows], [np.zeros(len(r)) for r in rows])
    profile = ProfileContext(9, region, level, finished=finished)
    out = enforce_rows(page, CATALOG, profile, dedupe_top_rows=dedupe, row_count=row_count)
    assert len(out) <= row_count
    assert violations(CATALOG, out.title_ids.tolist(), region, level, set(finished)) == []
    top = [t for r in range(min(dedupe, len(out))) for t in out.row(r)[0].tolist()]
    assert len(top) == len(set(top))
    for r in range(len(out)):
        ids = out.row(r)[0].tolist()
        assert ids and len(ids) == len(set(ids))
        original = iter(rows[int(out.headers[r].row_id[1:])])
        assert all(t in original for t in ids)  # a subsequence of its input row: order kept


@settings(max_examples=40, deadline=None)
@given(progress=st.dictionaries(st.integers(1, N_TITLES), st.tuples(st.floats(0.05, 0.89), st.floats(0, 1e9)), max_size=8),
       finished=st.frozensets(st.integers(1, N_TITLES), max_size=5))
def test_overlay_puts_the_most_recent_allowed_title_first(progress, finished):
    state = PlaybackState(progress, finished)
    page = stored_page(ADULT, "US", 4, n_rows=12).compact_rows()
    out = overlay_playback(page, state, CATALOG, ProfileContext(ADULT, "US", 4), row_length=8, dedupe_top_rows=10, row_count=40)
    allowed = [t for t, (_, ts) in sorted(progress.items(), key=lambda kv: (-kv[1][1], kv[0]))
               if t not in finished and not violations(CATALOG, [t], "US", 4)]
    if allowed:
        assert out.headers[0].source == "continue_watching" and out.row(0)[0][0] == allowed[0]
    assert not set(out.title_ids.tolist()) & set(finished)


def test_batch_parse_equals_per_page_parse():
    pages = [stored_page(ADULT, "US", 4, n_rows=5), stored_page(None, "BR", 1, n_rows=0), stored_page(KID, "US", 1, n_rows=2)]
    texts = [json.dumps(p.to_dict()) for p in pages]
    for texts_in in (texts, [json.dumps(p.to_dict(), indent=1) for p in pages]):  # multi-line: per-page fallback
        for got, text in zip(parse_pages(texts_in), texts, strict=True):
            want = CompactRows.from_json(text)
            assert got.headers == want.headers
            assert got.offsets.tolist() == want.offsets.tolist() and got.title_ids.tolist() == want.title_ids.tolist()
            assert got.scores.tolist() == want.scores.tolist()


def test_enforce_rows_matches_the_row_filter_on_random_pages() -> None:
    """The vectorized ``enforce_rows`` gives exactly what ``RowFilter.filter_rows`` gives."""
    from ranking.filtering import RowFilter

    catalog = Catalog.from_table(titles_table())
    rng = np.random.default_rng(7)
    for case in range(300):
        n_rows = int(rng.integers(0, 14))
        ids = [rng.integers(1, 46, int(rng.integers(0, 9))).astype(np.int64) for _ in range(n_rows)]  # 41..45: unknown
        scores = [np.round(rng.random(len(i)), 6) for i in ids]
        headers = [RowHeader(f"r{k}", f"Row {k}", "src", "") for k in range(n_rows)]
        rows = CompactRows.build(headers, ids, scores)
        finished = frozenset(rng.integers(1, 41, int(rng.integers(0, 4))).tolist())
        profile = ProfileContext(1, str(rng.choice(["US", "BR"])), int(rng.integers(0, 5)), finished=finished)
        dedupe, row_count = int(rng.integers(0, 6)), int(rng.integers(1, 12))
        got = enforce_rows(rows, catalog, profile, dedupe_top_rows=dedupe, row_count=row_count)
        kept = RowFilter(catalog, profile, dedupe).filter_rows(rows.ids_per_row(), row_count)
        want_ids = [rows.row(r)[0][keep].tolist() for r, keep in kept]
        want_scores = [rows.row(r)[1][keep].tolist() for r, keep in kept]
        assert [h.row_id for h in got.headers] == [headers[r].row_id for r, _ in kept], case
        assert [got.row(r)[0].tolist() for r in range(len(got.headers))] == want_ids, case
        assert [got.row(r)[1].tolist() for r in range(len(got.headers))] == want_scores, case


def test_rows_json_is_the_json_of_the_cards_for_any_artwork_and_scores() -> None:
    """The fragment renderer against ``json.dumps`` of ``Row.to_dict``: policy artwork, propensities
    and scores of every magnitude (orjson's text where it equals ``repr``, ``repr`` elsewhere), empty rows."""
    rng = np.random.default_rng(3)
    for case in range(60):
        n_rows = int(rng.integers(0, 6))
        ids = [rng.integers(1, N_TITLES + 1, int(rng.integers(0 if case % 3 == 0 else 1, 7))) for _ in range(n_rows)]
        scale = [1.0, 1e-5, 1e12, 1e17][case % 4]
        scores = [rng.normal(0, scale, len(i)) for i in ids]
        rows = CompactRows.build([RowHeader(f"r{k}", f"Row \u00e9 {k}", "src", '"q"') for k in range(n_rows)], ids, scores)
        n = len(rows.title_ids)
        pos = CATALOG.positions(rows.title_ids)
        if case % 2:
            art, props = RENDERER.default_artwork[pos], np.ones(n)
        elif case % 4 == 2:  # a policy's choice: one of each title's own variants (pre-encoded fragments)
            art = RENDERER.artwork[pos, (rng.random(n) * RENDERER.n_variants[pos]).astype(np.int64)]
            props = rng.choice([0.95, 0.05 / 3, 1e-5, 1 / 3, 1e-7, 1.0], n)
        else:
            art, props = rng.integers(0, 10**6, n), rng.choice([1.0, 0.5, 1e-5, 1 / 3, 1e-7], n)
        want = json.dumps([r.to_dict() for r in rows.to_rows(CATALOG, art, props)], separators=(",", ":")).encode()
        assert RENDERER.rows_json(rows, art, props) == want, case
        assert RENDERER.rows_json(rows, art, props, RENDERER.positions(rows.title_ids)) == want, case


def test_enforce_rows_matches_the_row_filter_on_clean_pages() -> None:
    """Pages that mostly break no rule (the common case ``enforce_rows`` answers without rebuilding)
    give exactly what ``RowFilter.filter_rows`` gives, and an untouched page comes back as is."""
    from ranking.filtering import RowFilter

    rng = np.random.default_rng(11)
    unchanged = 0
    for case in range(200):
        profile = ProfileContext(1, "US", 4, finished=frozenset({int(rng.integers(1, N_TITLES + 1))} if case % 5 == 0 else ()))
        allowed = [t for t in range(1, N_TITLES + 1) if not violations(CATALOG, [t], "US", 4)]
        n_rows = int(rng.integers(1, 8))
        ids = [rng.choice(allowed, int(rng.integers(1, 5)), replace=case % 7 == 0).astype(np.int64) for _ in range(n_rows)]
        rows = CompactRows.build([RowHeader(f"r{k}", f"Row {k}", "src", "") for k in range(n_rows)], ids,
                                 [np.round(rng.random(len(i)), 6) for i in ids])
        dedupe, row_count = int(rng.integers(0, 4)), int(rng.integers(1, 9))
        got = enforce_rows(rows, CATALOG, profile, dedupe_top_rows=dedupe, row_count=row_count)
        kept = RowFilter(CATALOG, profile, dedupe).filter_rows(rows.ids_per_row(), row_count)
        assert [h.row_id for h in got.headers] == [rows.headers[r].row_id for r, _ in kept], case
        assert [got.row(r)[0].tolist() for r in range(len(got.headers))] == [rows.row(r)[0][k].tolist() for r, k in kept]
        assert [got.row(r)[1].tolist() for r in range(len(got.headers))] == [rows.row(r)[1][k].tolist() for r, k in kept]
        unchanged += got is rows
    assert unchanged > 20  # the fast path was taken


def test_overlay_without_moves_equals_the_rebuilt_page() -> None:
    """``overlay_playback``'s shortcut (no continue-watching change: the stored rows as they are)
    gives exactly what rebuilding the rows first gives, for pages with and without that row."""
    from dataclasses import replace as with_

    from serving.overlay import CONTINUE_HEADER, continue_watching

    rng = np.random.default_rng(3)
    for case in range(300):
        n_rows = int(rng.integers(0, 10))
        ids = [rng.integers(1, 46, int(rng.integers(0, 9))).astype(np.int64) for _ in range(n_rows)]
        scores = [np.round(rng.random(len(i)), 6) for i in ids]
        headers = [RowHeader(f"r{k}", f"Row {k}", "src", "") for k in range(n_rows)]
        if n_rows and case % 2:  # a stored "Continue watching" row (the nightly's header), first or not
            stored_cw = RowHeader("continue_watching:0", "Continue watching", "continue_watching", "Continue watching")
            headers[int(rng.integers(0, n_rows)) if case % 4 == 1 else 0] = stored_cw
        rows = CompactRows.build(headers, ids, scores)
        finished = frozenset(rng.integers(1, 41, int(rng.integers(0, 3))).tolist())
        state = PlaybackState({}, finished)
        profile = ProfileContext(1, str(rng.choice(["US", "BR"])), int(rng.integers(0, 5)))
        dedupe, row_count = int(rng.integers(0, 6)), int(rng.integers(1, 12))
        got = overlay_playback(rows, state, CATALOG, profile, row_length=8, dedupe_top_rows=dedupe, row_count=row_count)
        cw_index = next((i for i, h in enumerate(rows.headers) if h.source == "continue_watching"), None)
        cw_ids, cw_scores = continue_watching(state, rows.row(cw_index) if cw_index is not None else None, 8)
        h2, i2, s2 = ([CONTINUE_HEADER], [cw_ids], [cw_scores]) if len(cw_ids) else ([], [], [])
        for r, h in enumerate(rows.headers):
            if r != cw_index:
                h2.append(h)
                i2.append(rows.row(r)[0])
                s2.append(rows.row(r)[1])
        want = enforce_rows(CompactRows.build(h2, i2, s2), CATALOG, with_(profile, finished=finished),
                            dedupe_top_rows=dedupe, row_count=row_count)
        assert got.headers == want.headers, case
        assert got.offsets.tolist() == want.offsets.tolist() and got.title_ids.tolist() == want.title_ids.tolist()
        assert got.scores.tolist() == want.scores.tolist()
