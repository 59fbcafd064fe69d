"""The fallback ladder, as an explicit step: which non-personalized page a profile gets.

Rungs, tried in order until one yields at least one row that passes the hard rules:

1. ``cohort``: the snapshot's fallback page for exactly (region, max maturity level);
2. ``global``: another fallback page of the snapshot, the profile's region first at lower
   maturity levels, then other regions at or below the level (rules drop what is not licensed);
3. ``catalog``: rows of the snapshot's catalog, newest first (no fallback page usable);
4. ``none``: an empty page (no snapshot was ever loaded).

Every rung goes through ``overlay.enforce_page``, so no rung can show a forbidden title.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from pathways.catalog import Catalog
from pathways.types import Page, Row, TitleCard
from ranking.rules import allowed_mask
from serving.overlay import enforce_page
from serving.snapshots import LoadedSnapshot


def fallback_order(keys: list[tuple[str, int]], region: str, max_maturity_level: int) -> list[tuple[str, int]]:
    """Fallback page keys to try for (region, level), best first (excluding levels above)."""
    usable = [k for k in keys if k[1] <= max_maturity_level]
    return sorted(usable, key=lambda k: (k != (region, max_maturity_level), k[0] != region, -k[1], k[0]))


def catalog_rows(
    catalog: Catalog, region: str, max_maturity_level: int, finished: frozenset[int], row_length: int, row_count: int
) -> tuple[Row, ...]:
    """Allowed titles of ``catalog``, newest first, in rows of ``row_length``."""
    keep = allowed_mask(catalog, catalog.title_ids, region, max_maturity_level, finished)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-catalog.release_days[idx].astype(np.int64), kind="stable")][: row_length * row_count]
    rows = []
    for i, start in enumerate(range(0, len(idx), row_length)):
        chunk = idx[start : start + row_length]
        cards = tuple(
            TitleCard(int(catalog.title_ids[p]), catalog.names[p], int(catalog.maturity[p]), score=0.0) for p in chunk
        )
        title = "New on Pathways" if i == 0 else "More to explore"
        rows.append(Row(f"catalog:{i}", title, "catalog", "Newest titles in the catalog", cards))
    return tuple(rows)


def fallback_page(
    snapshot: LoadedSnapshot | None,
    profile_id: int | None,
    region: str,
    max_maturity_level: int,
    *,
    reason: str,
    cell: str | None,
    finished: frozenset[int] = frozenset(),
    row_count: int = 40,
    row_length: int = 40,
    dedupe_top_rows: int = 10,
) -> Page:
    """The best non-personalized page for (region, level); ``personalized=False`` with ``reason``."""
    base = Page(
        profile_id=profile_id, region=region, max_maturity_level=max_maturity_level, rows=(), personalized=False,
        reason=reason, cell=cell, snapshot=snapshot.version if snapshot else None, fallback_rung="none",
    )
    if snapshot is None:
        return base
    catalog = snapshot.catalog
    for key in fallback_order(list(snapshot.fallbacks), region, max_maturity_level):
        try:
            stored = Page.from_dict(json.loads(snapshot.fallbacks[key]))
        except (ValueError, KeyError, TypeError):
            continue  # one unreadable fallback page: try the next rung
        page = enforce_page(
            replace(base, rows=stored.rows), catalog, region, max_maturity_level, finished,
            dedupe_top_rows=dedupe_top_rows, row_count=row_count,
        )
        if page.rows:
            rung = "cohort" if key == (region, max_maturity_level) else "global"
            return replace(page, fallback_rung=rung)
    rows = catalog_rows(catalog, region, max_maturity_level, finished, row_length, row_count)
    return replace(base, rows=rows, fallback_rung="catalog" if rows else "none")
