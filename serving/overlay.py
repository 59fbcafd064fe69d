"""Page transformations at request time, each a plain function over ``CompactRows``.

- ``enforce_rows``: the hard rules and the de-duplication of ``ranking.filtering.RowFilter`` (the
  page assembler's own filter) over rows in page order, at most ``row_count`` rows. Every page
  served passes through it (personalized and fallback).
- ``overlay_playback``: the real-time playback state over a snapshot page: a fresh "Continue
  watching" row first (most recently watched first, then the snapshot row's other titles),
  finished titles removed from every row; then ``enforce_rows``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from features.history import PlaybackState
from pathways.catalog import Catalog
from pathways.types import CompactRows, ProfileContext, RowHeader
from ranking.rules import allowed_mask

CONTINUE_WATCHING = "continue_watching"
CONTINUE_HEADER = RowHeader(CONTINUE_WATCHING, "Continue watching", CONTINUE_WATCHING, "Pick up where you left off")


def enforce_rows(
    rows: CompactRows, catalog: Catalog, profile: ProfileContext, *, dedupe_top_rows: int, row_count: int
) -> CompactRows:
    """``rows`` keeping only titles allowed for ``profile`` (region, maturity, finished), each once
    per row and once across the first ``dedupe_top_rows`` rows placed; empty rows dropped; at most
    ``row_count`` rows. The same result as ``ranking.filtering.RowFilter.filter_rows`` (a test
    checks both agree), with the rules and the in-row de-duplication done for the whole page at once."""
    if dedupe_top_rows < 0:
        raise ValueError(f"dedupe_top_rows must be >= 0, got {dedupe_top_rows}")
    n_rows = len(rows.headers)
    ids = rows.title_ids
    if n_rows == 0 or len(ids) == 0:
        return CompactRows.empty()
    unchanged = _unchanged_prefix(rows, catalog, profile, dedupe_top_rows, row_count)
    if unchanged is not None:
        return unchanged
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(rows.offsets))
    ok = allowed_mask(catalog, ids, profile.region, profile.max_maturity_level, profile.finished)
    cand = np.flatnonzero(ok)
    order = np.lexsort((cand, ids[cand], row_of[cand]))  # by row, then title, then position
    srt = cand[order]
    first = np.ones(len(srt), dtype=bool)
    first[1:] = (row_of[srt[1:]] != row_of[srt[:-1]]) | (ids[srt[1:]] != ids[srt[:-1]])
    kept = np.sort(srt[first])  # flat positions: allowed, first of their title in their row
    bounds = np.searchsorted(row_of[kept], np.arange(n_rows + 1, dtype=np.int64))
    headers: list[RowHeader] = []
    out_ids: list[np.ndarray] = []
    out_scores: list[np.ndarray] = []
    seen: set[int] = set()
    for r in range(n_rows):
        if len(headers) >= row_count:
            break
        at = kept[bounds[r] : bounds[r + 1]]
        if len(at) and seen and len(headers) < dedupe_top_rows:
            at = at[[t not in seen for t in ids[at].tolist()]]
        if not len(at):
            continue
        if len(headers) < dedupe_top_rows:
            seen.update(ids[at].tolist())
        headers.append(rows.headers[r])
        out_ids.append(ids[at])
        out_scores.append(rows.scores[at])
    return CompactRows.build(headers, out_ids, out_scores)


def _unchanged_prefix(
    rows: CompactRows, catalog: Catalog, profile: ProfileContext, dedupe_top_rows: int, row_count: int
) -> CompactRows | None:
    """The common case, cheaply: when the first ``row_count`` rows are all non-empty, break no rule
    and repeat no title (within a row, or across the first ``dedupe_top_rows`` rows), they are the
    result (the whole of ``rows`` when it has no more rows). None: the general path decides."""
    n = min(len(rows.headers), row_count)
    end = int(rows.offsets[n])
    ids = rows.title_ids[:end]
    lengths = np.diff(rows.offsets[: n + 1])
    if not lengths.all() or int(ids.min()) < 0 or int(ids.max()) >= 1 << 31:
        return None
    if not allowed_mask(catalog, ids, profile.region, profile.max_maturity_level, profile.finished).all():
        return None
    row_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
    # One key per (row, title), except that the first dedupe_top_rows rows share one key space.
    keys = np.where(row_of < dedupe_top_rows, 0, row_of) << 32 | ids
    keys.sort()
    if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
        return None
    scores = np.round(rows.scores[:end], 6)  # as served (the general path's CompactRows.build rounds too)
    if n == len(rows.headers) and np.array_equal(scores, rows.scores):
        return rows
    return CompactRows(rows.headers[:n], rows.offsets[: n + 1], ids, scores)


def continue_watching(state: PlaybackState, previous: tuple[np.ndarray, np.ndarray] | None, row_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and scores (the fraction watched) of the "Continue watching" row, before the rules."""
    recent = sorted(state.in_progress.items(), key=lambda kv: (-kv[1][1], kv[0]))
    ids = [int(t) for t, _ in recent if t not in state.finished]
    scores = [float(f) for t, (f, _) in recent if t not in state.finished]
    if previous is not None:
        have = set(ids)
        for t, s in zip(previous[0].tolist(), previous[1].tolist()):
            if t not in have and t not in state.finished:
                ids.append(t)
                scores.append(s)
    return np.array(ids[:row_length], dtype=np.int64), np.array(scores[:row_length], dtype=np.float64)


def overlay_playback(
    rows: CompactRows,
    state: PlaybackState,
    catalog: Catalog,
    profile: ProfileContext,
    *,
    row_length: int,
    dedupe_top_rows: int,
    row_count: int,
) -> CompactRows:
    """``rows`` with the real-time state applied: continue watching first, finished removed."""
    cw_index = next((i for i, h in enumerate(rows.headers) if h.source == CONTINUE_WATCHING), None)
    cw_ids, cw_scores = continue_watching(state, rows.row(cw_index) if cw_index is not None else None, row_length)
    profile = replace(profile, finished=state.finished)
    if _in_place(rows, cw_index, cw_ids, cw_scores):  # the common case: no row moves, none is rebuilt
        if cw_index == 0:
            rows = CompactRows((CONTINUE_HEADER, *rows.headers[1:]), rows.offsets, rows.title_ids, rows.scores)
        return enforce_rows(rows, catalog, profile, dedupe_top_rows=dedupe_top_rows, row_count=row_count)
    headers, ids, scores = [], [], []
    if len(cw_ids):
        headers.append(CONTINUE_HEADER)
        ids.append(cw_ids)
        scores.append(cw_scores)
    for r, h in enumerate(rows.headers):
        if r != cw_index:
            headers.append(h)
            i, s = rows.row(r)
            ids.append(i)
            scores.append(s)
    return enforce_rows(CompactRows.build(headers, ids, scores), catalog, profile, dedupe_top_rows=dedupe_top_rows,
                        row_count=row_count)


def _in_place(rows: CompactRows, cw_index: int | None, cw_ids: np.ndarray, cw_scores: np.ndarray) -> bool:
    """Whether "Continue watching" is already what it must be: absent with nothing to show, or
    first with the same titles and scores (as served: 6 decimals)."""
    if cw_index is None:
        return not len(cw_ids)
    if cw_index != 0:
        return False
    ids, scores = rows.row(0)
    return np.array_equal(ids, cw_ids) and np.array_equal(np.round(scores, 6), np.round(cw_scores, 6))
