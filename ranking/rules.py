"""The hard rules, in one place. Every path that can put a title on a page goes through here:
personalized rows, fallback pages and the real-time overlay in serving.

1. Maturity: a title's ``maturity_level`` must be <= the profile's ``max_maturity_level``.
2. Licence: the title must be licensed in the profile's region.
3. Finished: a title the profile finished is not recommended again (except continue watching,
   which never holds finished titles either: finishing removes it from that row).
4. Unknown titles (not in the catalog) are never shown.

Candidate sources call ``enforce``; whole pages (the assembler, serving's overlay and fallback
ladder) get these rules together with the de-duplication from ``ranking.filtering.RowFilter``.
"""

from __future__ import annotations

import numpy as np

from pathways.catalog import Catalog
from pathways.types import Candidates, ProfileContext


def allowed_mask(
    catalog: Catalog,
    title_ids: np.ndarray,
    region: str,
    max_maturity_level: int,
    finished: frozenset[int] | set[int] = frozenset(),
) -> np.ndarray:
    """Bool mask over ``title_ids`` (shape (n,)) of titles that break no hard rule."""
    pos = catalog.positions(np.asarray(title_ids, dtype=np.int64))
    known = pos >= 0
    safe = np.where(known, pos, 0)
    ok = known & (catalog.maturity[safe] <= max_maturity_level) & catalog.licensed_mask(region)[safe]
    if finished:
        ok &= ~np.isin(title_ids, np.fromiter(finished, dtype=np.int64, count=len(finished)))
    return ok


def enforce(candidates: Candidates, catalog: Catalog, profile: ProfileContext) -> Candidates:
    """Drop every candidate that breaks a hard rule for ``profile``."""
    if len(candidates) == 0:
        return candidates
    keep = allowed_mask(catalog, candidates.title_ids, profile.region, profile.max_maturity_level, profile.finished)
    return candidates.mask(keep)


def violations(
    catalog: Catalog, title_ids: list[int], region: str, max_maturity_level: int,
    finished: frozenset[int] | set[int] = frozenset(),
) -> list[tuple[int, str]]:
    """(title_id, which rule) for every title that breaks a rule: for tests and audits."""
    out: list[tuple[int, str]] = []
    for t in title_ids:
        i = catalog.index.get(int(t))
        if i is None:
            out.append((int(t), "unknown title"))
        elif catalog.maturity[i] > max_maturity_level:
            out.append((int(t), "maturity"))
        elif not catalog.licensed_mask(region)[i]:
            out.append((int(t), "licence"))
        elif int(t) in finished:
            out.append((int(t), "finished"))
    return out
