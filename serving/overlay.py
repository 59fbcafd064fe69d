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
from ranking.filtering import RowFilter

CONTINUE_WATCHING = "continue_watching"
CONTINUE_HEADER = RowHeader(CONTINUE_WATCHING, "Continue watching", CONTINUE_WATCHING, "Pick up where you left off")


def enforce_rows(
    rows: CompactRows, catalog: Catalog, profile: ProfileContext, *, dedupe_top_rows: int, row_count: int
) -> CompactRows:
    """``rows`` keeping only titles allowed for ``profile`` (region, maturity, finished), each once
    per row and once across the first ``dedupe_top_rows`` rows; empty rows dropped."""
    kept = RowFilter(catalog, profile, dedupe_top_rows).filter_rows(rows.ids_per_row(), row_count)
    parts = [(rows.row(r), keep) for r, keep in kept]
    return CompactRows.build(
        [rows.headers[r] for r, _ in kept], [ids[keep] for (ids, _), keep in parts], [s[keep] for (_, s), keep in parts]
    )


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
    return enforce_rows(
        CompactRows.build(headers, ids, scores), catalog, replace(profile, finished=state.finished),
        dedupe_top_rows=dedupe_top_rows, row_count=row_count,
    )
