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
from pathways.types import Candidates, CompactRows, Page, ProfileContext, Row, RowHeader, TitleCard
from ranking.filtering import RowFilter

_POSITION_DISCOUNT = 1.0 / np.log2(np.arange(2, 202))  # DCG-style discount for up to 200 slots (row_length <= 100)


def row_values(sigmoids: np.ndarray, length: int) -> np.ndarray:
    """Each row's value from its squashed scores laid out in a zero-padded (rows, ``length``)
    float64 matrix: the discounted sum, one fixed-length sum per row, so a row's value is the same
    bits whether it is summed alone or with a whole block's rows (``ranking.block_page``)."""
    out: np.ndarray = (sigmoids * _POSITION_DISCOUNT[:length]).sum(axis=1)
    return out


def _row_value(scores: np.ndarray, length: int) -> float:
    n = min(length, scores.shape[0])
    if n == 0:
        return 0.0
    # Scores may be logits: squash into (0, 1) so values add up sensibly.
    padded = np.zeros((1, length))
    padded[0, :n] = 1.0 / (1.0 + np.exp(-scores[:n].astype(np.float64)))
    return float(row_values(padded, length)[0])


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
    chosen = choose_rows(rows, profile, catalog, config, row_count)
    return Page(
        profile_id=profile.profile_id if profile.known else None,
        region=profile.region,
        max_maturity_level=profile.max_maturity_level,
        rows=tuple(_to_row(c, catalog) for c in chosen),
        personalized=personalized,
        reason=reason,
        cell=profile.cell,
        snapshot=snapshot,
        fallback_rung=fallback_rung,
    )


def choose_rows(
    rows: list[Candidates], profile: ProfileContext, catalog: Catalog, config: PageConfig, row_count: int | None = None
) -> list[Candidates]:
    """The page's rows in order, each cut to ``row_length`` titles (``assemble_page`` without
    building ``Row``/``TitleCard`` objects: the nightly job stores ``row_header`` + ids + scores)."""
    row_count = config.max_rows if row_count is None else row_count
    if row_count < 1:
        raise ValueError(f"row_count must be >= 1, got {row_count}")
    length = config.row_length
    pinned = config.pinned_sources
    rules = RowFilter(catalog, profile, config.dedupe_top_rows)
    rows = [cands for cands in rows if len(cands)]
    pool = [c.mask(keep) for c, keep in zip(rows, rules.admit([c.title_ids for c in rows])) if len(keep)]
    positions = [catalog.positions(c.title_ids) for c in pool]  # admitted titles are all in the catalog

    taken_per_source: dict[str, int] = {}
    whole_value: dict[int, float] = {}  # a row's value while none of its titles is hidden (it does not change)
    chosen: list[Candidates] = []
    remaining = list(range(len(pool)))
    while remaining and len(chosen) < row_count:
        if rules.placed >= config.dedupe_top_rows:  # nothing is hidden any more: the rest in one go
            values = [whole_value[i] if i in whole_value else _row_value(pool[i].scores, length) for i in remaining]
            for i in _rest_in_order(pool, remaining, values, taken_per_source, config, row_count - len(chosen)):
                cands = pool[i].top(length)
                rules.place(cands.title_ids)
                chosen.append(cands)
            break
        best, best_value, best_keep = -1, -np.inf, None
        for i in remaining:
            cands = pool[i]
            keep = rules.unseen_at(positions[i])
            whole = bool(keep.all())
            shown = len(cands) if whole else int(np.count_nonzero(keep))
            min_len = 1 if cands.source in pinned else config.min_row_length
            if shown < min(min_len, len(cands)) or shown == 0:
                continue
            if cands.source in pinned:
                value = 1e18 * (len(pinned) - pinned.index(cands.source))  # before any scored row, in pinned order
            else:
                if whole:
                    if i not in whole_value:
                        whole_value[i] = _row_value(cands.scores, length)
                    value = whole_value[i]
                else:
                    value = _row_value(cands.scores[keep], length)
                value /= 1.0 + config.diversity_weight * taken_per_source.get(cands.source, 0)
            if value > best_value:
                best, best_value, best_keep = i, value, None if whole else keep
        if best < 0:
            break
        remaining.remove(best)
        cands = (pool[best] if best_keep is None else pool[best].mask(best_keep)).top(length)
        rules.place(cands.title_ids)
        taken_per_source[cands.source] = taken_per_source.get(cands.source, 0) + 1
        chosen.append(cands)
    return chosen


def _rest_in_order(
    pool: list[Candidates], remaining: list[int], values: list[float], taken_per_source: dict[str, int],
    config: PageConfig, n: int,
) -> list[int]:
    """``choose_rows``' greedy choice once no title can be hidden any more, vectorized: each row's
    value is fixed but for the diversity factor of its source, so each step is one ``argmax``
    (the first best, as the loop picks it). ``values``: each remaining row's ``_row_value``."""
    pinned = config.pinned_sources
    is_pinned = np.array([pool[i].source in pinned for i in remaining])
    pinned_value = np.array([1e18 * (len(pinned) - pinned.index(pool[i].source)) if pool[i].source in pinned else 0.0
                             for i in remaining])
    sources = sorted({pool[i].source for i in remaining})
    src = np.array([sources.index(pool[i].source) for i in remaining], dtype=np.int64)
    taken = np.array([taken_per_source.get(name, 0) for name in sources], dtype=np.int64)
    base = np.asarray(values, dtype=np.float64)
    alive = np.ones(len(remaining), dtype=bool)
    order: list[int] = []
    while len(order) < n and alive.any():
        value = np.where(is_pinned, pinned_value, base / (1.0 + config.diversity_weight * taken[src]))
        value = np.where(alive & ~np.isnan(value), value, -np.inf)
        j = int(np.argmax(value))
        if value[j] == -np.inf:
            break
        alive[j] = False
        taken[src[j]] += 1
        taken_per_source[sources[src[j]]] = int(taken[src[j]])
        order.append(remaining[j])
    return order


def row_header(cands: Candidates) -> RowHeader:
    """The header of the row ``cands`` becomes on a page (as ``_to_row`` labels it)."""
    return RowHeader(cands.row_id, cands.evidence or cands.source, cands.source, cands.evidence)


def compact_page(chosen: list[Candidates]) -> CompactRows:
    """``choose_rows``' rows as ``CompactRows``: equal to ``assemble_page(...).compact_rows()``."""
    return CompactRows.build([row_header(c) for c in chosen], [c.title_ids for c in chosen],
                             [c.scores.astype(np.float64) for c in chosen])


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
    h = row_header(cands)
    return Row(row_id=h.row_id, title=h.title, source=h.source, evidence=h.evidence, titles=cards)


def page_title_ids(page: Page, first_rows: int | None = None) -> list[int]:
    """All title ids on ``page`` (row-major), optionally only the first ``first_rows`` rows."""
    rows = page.rows if first_rows is None else page.rows[:first_rows]
    return [t.title_id for r in rows for t in r.titles]
