"""The fallback ladder, as an explicit step: which non-personalized page a profile gets.

Rungs, tried in order until one yields at least one row that passes the hard rules:

1. ``cohort``: the snapshot's fallback page for exactly (region, max maturity level);
2. ``global``: another fallback page of the snapshot, the profile's region first at lower
   maturity levels, then other regions at or below the level (rules drop what is not licensed);
3. ``catalog``: rows of the snapshot's catalog, newest first (no fallback page usable);
4. ``none``: an empty page (no snapshot was ever loaded).

Every rung goes through ``overlay.enforce_rows``, so no rung can show a forbidden title.
"""

from __future__ import annotations

import numpy as np

from pathways.catalog import Catalog
from ranking.rules import allowed_mask
from serving.overlay import enforce_rows
from serving.rows import PageRows, RowMeta
from serving.snapshots import LoadedSnapshot

NO_RUNG = "none"


def fallback_order(keys: list[tuple[str, int]], region: str, max_maturity_level: int) -> list[tuple[str, int]]:
    """Fallback page keys to try for (region, level), best first (excluding levels above)."""
    usable = [k for k in keys if k[1] <= max_maturity_level]
    return sorted(usable, key=lambda k: (k != (region, max_maturity_level), k[0] != region, -k[1], k[0]))


def catalog_rows(
    catalog: Catalog, region: str, max_maturity_level: int, finished: frozenset[int], row_length: int, row_count: int
) -> PageRows:
    """Allowed titles of ``catalog``, newest first, in rows of ``row_length``."""
    keep = allowed_mask(catalog, catalog.title_ids, region, max_maturity_level, finished)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-catalog.release_days[idx].astype(np.int64), kind="stable")][: row_length * row_count]
    chunks = [idx[s : s + row_length] for s in range(0, len(idx), row_length)]
    meta = [
        RowMeta(f"catalog:{i}", "New on Pathways" if i == 0 else "More to explore", "catalog", "Newest titles in the catalog")
        for i in range(len(chunks))
    ]
    return PageRows.build(meta, [catalog.title_ids[c] for c in chunks], [np.zeros(len(c)) for c in chunks])


def fallback_rows(
    snapshot: LoadedSnapshot | None,
    region: str,
    max_maturity_level: int,
    finished: frozenset[int] = frozenset(),
    *,
    row_count: int = 40,
    row_length: int = 40,
    dedupe_top_rows: int = 10,
) -> tuple[PageRows, str]:
    """The best non-personalized rows for (region, level) and the rung that gave them."""
    if snapshot is None:
        return PageRows.empty(), NO_RUNG
    catalog = snapshot.catalog
    for key in fallback_order(list(snapshot.fallbacks), region, max_maturity_level):
        rows = enforce_rows(
            snapshot.fallbacks[key], catalog, region, max_maturity_level, finished,
            dedupe_top_rows=dedupe_top_rows, row_count=row_count,
        )
        if len(rows):
            return rows, "cohort" if key == (region, max_maturity_level) else "global"
    rows = catalog_rows(catalog, region, max_maturity_level, finished, row_length, row_count)
    return rows, "catalog" if len(rows) else NO_RUNG
