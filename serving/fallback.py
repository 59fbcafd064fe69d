"""The fallback ladder, as an explicit step: which non-personalized page a profile gets.

Rungs, tried in order until one yields at least one row that passes the hard rules:

1. ``cohort``: the snapshot's fallback page for exactly (region, max maturity level);
2. ``global``: another fallback page of the snapshot, the profile's region first at lower
   maturity levels, then other regions at or below the level (rules drop what is not licensed);
3. ``catalog``: rows of the snapshot's catalog, newest first (no fallback page usable);
4. ``none``: an empty page (no snapshot was ever loaded).

``fill_rows`` takes the ladder row by row: a personalized page left with fewer rows than asked (the
real-time rules emptied some) is completed with the cohort (then global) rows, each marked with its rung.

Every rung goes through ``ranking.filtering.RowFilter`` (snapshot pages via ``overlay.enforce_rows``),
so no rung can show a forbidden title.
"""

from __future__ import annotations

import numpy as np

from pathways.catalog import Catalog
from pathways.types import CompactRows, ProfileContext, RowHeader
from ranking.filtering import RowFilter
from serving.overlay import enforce_rows
from serving.snapshots import LoadedSnapshot

NO_RUNG = "none"


def fallback_order(keys: list[tuple[str, int]], region: str, max_maturity_level: int) -> list[tuple[str, int]]:
    """Fallback page keys to try for (region, level), best first (excluding levels above)."""
    usable = [k for k in keys if k[1] <= max_maturity_level]
    return sorted(usable, key=lambda k: (k != (region, max_maturity_level), k[0] != region, -k[1], k[0]))


def catalog_rows(catalog: Catalog, profile: ProfileContext, row_length: int, row_count: int) -> CompactRows:
    """Titles of ``catalog`` allowed for ``profile``, newest first, in rows of ``row_length``."""
    (idx,) = RowFilter(catalog, profile, dedupe_top_rows=0).admit([catalog.title_ids])
    idx = idx[np.argsort(-catalog.release_days[idx].astype(np.int64), kind="stable")][: row_length * row_count]
    chunks = [idx[s : s + row_length] for s in range(0, len(idx), row_length)]
    headers = [
        RowHeader(f"catalog:{i}", "New on Pathways" if i == 0 else "More to explore", "catalog", "Newest titles in the catalog")
        for i in range(len(chunks))
    ]
    return CompactRows.build(headers, [catalog.title_ids[c] for c in chunks], [np.zeros(len(c)) for c in chunks])


def fallback_rows(
    snapshot: LoadedSnapshot | None, profile: ProfileContext, *, row_count: int, row_length: int, dedupe_top_rows: int
) -> tuple[CompactRows, str]:
    """The best non-personalized rows for ``profile`` (region, level, finished) and the rung that gave them."""
    if snapshot is None:
        return CompactRows.empty(), NO_RUNG
    catalog = snapshot.catalog
    region, level = profile.region, profile.max_maturity_level
    for key in fallback_order(list(snapshot.fallbacks), region, level):
        rows = enforce_rows(snapshot.fallbacks[key], catalog, profile, dedupe_top_rows=dedupe_top_rows, row_count=row_count)
        if len(rows):
            return rows, "cohort" if key == (region, level) else "global"
    rows = catalog_rows(catalog, profile, row_length, row_count)
    return rows, "catalog" if len(rows) else NO_RUNG


def fill_rows(
    rows: CompactRows, ladder: CompactRows, catalog: Catalog, profile: ProfileContext, *, row_count: int,
    dedupe_top_rows: int,
) -> tuple[CompactRows, int]:
    """Row by row down the ladder: ``rows`` (already through the rules) followed by the rows of
    ``ladder`` not already on the page, through the rules and de-duplication, up to ``row_count``.
    Returns the page and how many of its rows came from ``ladder`` (they follow ``rows``)."""
    if len(rows.headers) >= row_count or not len(ladder.headers):
        return rows, 0
    have = {h.row_id for h in rows.headers}
    extra = [r for r, h in enumerate(ladder.headers) if h.row_id not in have]
    own = range(len(rows.headers))
    combined = CompactRows.build(
        [*rows.headers, *(ladder.headers[r] for r in extra)],
        [*(rows.row(r)[0] for r in own), *(ladder.row(r)[0] for r in extra)],
        [*(rows.row(r)[1] for r in own), *(ladder.row(r)[1] for r in extra)],
    )
    out = enforce_rows(combined, catalog, profile, dedupe_top_rows=dedupe_top_rows, row_count=row_count)
    return out, max(0, len(out.headers) - len(rows.headers))
