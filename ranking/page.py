"""Page assembly: choose which rows to show, in what order, and fill them.

Input: scored candidate rows (one ``Candidates`` per row, already re-scored by the ranker and
filtered by the hard rules). Output: a ``Page`` of up to ``row_count`` rows of up to
``row_length`` titles.

The optimizer is greedy over rows: at each step it takes the row with the highest marginal
value, where a row's value is the discounted sum of the scores of the titles it would still
show (titles already placed in the first ``dedupe_top_rows`` rows are removed from it), times
a diversity factor ``1 / (1 + diversity_weight * rows_already_taken_from_its_source)``.
The ``pinned_sources`` (continue watching, the top picks) go first when present, in that order.
Rows left with fewer than ``min_row_length`` titles are dropped. The hard rules and the
de-duplication (no title twice within a row, nor across the first ``dedupe_top_rows`` rows) are
``ranking.filtering.RowFilter``'s, the same filter serving applies: the rules are re-checked on
every title placed (defence in depth: a bug upstream can never put a forbidden title on a page).
"""

from __future__ import annotations

import numpy as np

from pathways.catalog import Catalog
from pathways.config import PageConfig
from pathways.types import Candidates, Page, ProfileContext, Row, TitleCard
from ranking.filtering import RowFilter

_POSITION_DISCOUNT = 1.0 / np.log2(np.arange(2, 202))  # DCG-style discount for up to 200 slots (row_length <= 100)


def _row_value(scores: np.ndarray, length: int) -> float:
    n = min(length, scores.shape[0])
    if n == 0:
        return 0.0
    # Scores may be logits: squash into (0, 1) so values add up sensibly.
    s = 1.0 / (1.0 + np.exp(-scores[:n].astype(np.float64)))
    return float(np.dot(s, _POSITION_DISCOUNT[:n]))


def assemble_page(
    rows: list[Candidates],
    profile: ProfileContext,
    catalog: Catalog,
    config: PageConfig,
    row_count: int | None = None,
    *,
    personalized: bool = True,
    reason: str | None = None,
    snapshot: str | None = None,
    fallback_rung: str | None = None,
) -> Page:
    """Build the page for ``profile`` from candidate ``rows`` (see the module docstring)."""
    row_count = config.max_rows if row_count is None else row_count
    if row_count < 1:
        raise ValueError(f"row_count must be >= 1, got {row_count}")
    length = config.row_length
    pinned = config.pinned_sources
    rules = RowFilter(catalog, profile, config.dedupe_top_rows)
    rows = [cands for cands in rows if len(cands)]
    pool = [c.mask(keep) for c, keep in zip(rows, rules.admit([c.title_ids for c in rows])) if len(keep)]

    taken_per_source: dict[str, int] = {}
    chosen: list[Row] = []
    remaining = list(range(len(pool)))
    while remaining and len(chosen) < row_count:
        best, best_value, best_ids = -1, -np.inf, None
        for i in remaining:
            cands = pool[i]
            keep = rules.unseen(cands.title_ids)
            view = cands if keep.all() else cands.mask(keep)
            min_len = 1 if cands.source in pinned else config.min_row_length
            if len(view) < min(min_len, len(cands)) or len(view) == 0:
                continue
            if cands.source in pinned:
                value = 1e18 * (len(pinned) - pinned.index(cands.source))  # before any scored row, in pinned order
            else:
                value = _row_value(view.scores, length)
                value /= 1.0 + config.diversity_weight * taken_per_source.get(cands.source, 0)
            if value > best_value:
                best, best_value, best_ids = i, value, view
        if best < 0 or best_ids is None:
            break
        remaining.remove(best)
        cands = best_ids.top(length)
        rules.place(cands.title_ids)
        taken_per_source[cands.source] = taken_per_source.get(cands.source, 0) + 1
        chosen.append(_to_row(cands, catalog))

    return Page(
        profile_id=profile.profile_id if profile.known else None,
        region=profile.region,
        max_maturity_level=profile.max_maturity_level,
        rows=tuple(chosen),
        personalized=personalized,
        reason=reason,
        cell=profile.cell,
        snapshot=snapshot,
        fallback_rung=fallback_rung,
    )


def _to_row(cands: Candidates, catalog: Catalog) -> Row:
    pos = catalog.positions(cands.title_ids)
    cards = tuple(
        TitleCard(
            title_id=int(t),
            name=catalog.names[p],
            maturity_level=int(catalog.maturity[p]),
            score=float(s),
            artwork_id=int(catalog.artwork_ids[p][0]) if catalog.artwork_ids[p] else 0,
            artwork_propensity=1.0,
        )
        for t, s, p in zip(cands.title_ids, cands.scores, pos, strict=True)
    )
    return Row(row_id=cands.row_id, title=cands.evidence or cands.source, source=cands.source, evidence=cands.evidence, titles=cards)


def page_title_ids(page: Page, first_rows: int | None = None) -> list[int]:
    """All title ids on ``page`` (row-major), optionally only the first ``first_rows`` rows."""
    rows = page.rows if first_rows is None else page.rows[:first_rows]
    return [t.title_id for r in rows for t in r.titles]
