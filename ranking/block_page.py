"""The page assembler for a block of profiles at once: ``choose_rows`` over a ``RowBlock``.

``choose_block`` gives each profile the rows ``ranking.page.choose_rows`` gives it (same rows,
titles, scores and order), with each greedy step taken for every profile of the block together:
the hard rules re-checked on every title (maturity, licence region, finished: ``ranking.rules``),
de-duplication within a row and across the first ``dedupe_top_rows`` rows as one (profiles,
titles) mask, row values as one padded (rows, row_length) matrix summed per row
(``ranking.page.row_values``, the loop's own function), and each profile's best row as the first
maximum of its segment. Steps: ``dedupe_top_rows`` masked ones, then one per remaining row.
"""

from __future__ import annotations

import numpy as np

from candidates.block import RowBlock, entry_rows, segment_starts
from pathways.catalog import Catalog
from pathways.config import PageConfig
from pathways.types import CompactRows, ProfileContext, RowHeader
from ranking.page import row_values


def _admit(block: RowBlock, profiles: list[ProfileContext], catalog: Catalog) -> RowBlock:
    """``RowFilter.admit`` for every row: titles that break no hard rule, each once per row."""
    row = entry_rows(block.offsets)
    prof, pos = block.profile[row], block.positions
    regions = sorted({p.region for p in profiles})
    licensed = np.stack([catalog.licensed_mask(r) for r in regions]) if regions else np.zeros((0, len(catalog)), bool)
    region = np.array([regions.index(p.region) for p in profiles], np.int64)
    level = np.array([p.max_maturity_level for p in profiles], np.int64)
    finished = np.zeros((len(profiles), len(catalog)), bool)
    for i, p in enumerate(profiles):
        if p.finished:
            at = catalog.positions(np.fromiter(p.finished, np.int64, len(p.finished)))
            finished[i, at[at >= 0]] = True
    ok = (pos >= 0) & (catalog.maturity[pos] <= level[prof]) & licensed[region[prof], pos] & ~finished[prof, pos]
    idx = np.flatnonzero(ok)
    _, first = np.unique(row[idx] * len(catalog) + pos[idx], return_index=True)
    idx = idx[np.sort(first)]
    counts = np.bincount(row[idx], minlength=len(block))
    live = np.flatnonzero(counts)
    offsets = np.zeros(len(live) + 1, np.int64)
    np.cumsum(counts[live], out=offsets[1:])
    return RowBlock(block.profile[live], tuple(block.source[r] for r in live), tuple(block.evidence[r] for r in live),
                    tuple(block.key[r] for r in live), offsets, pos[idx], block.scores[idx])


def _first_best(value: np.ndarray, row_prof: np.ndarray, n_profiles: int) -> np.ndarray:
    """Per profile, the first row holding its segment's largest ``value`` (> -inf); -1 where none."""
    best = np.full(n_profiles, -np.inf)
    np.maximum.at(best, row_prof, value)
    hit = np.flatnonzero((value == best[row_prof]) & (value > -np.inf))
    out = np.full(n_profiles, -1, np.int64)
    prof, first = np.unique(row_prof[hit], return_index=True)
    out[prof] = hit[first]
    return out


def choose_block(block: RowBlock, profiles: list[ProfileContext], catalog: Catalog, config: PageConfig) -> list[CompactRows]:
    """Each profile's chosen rows (``choose_rows``), as the ``CompactRows`` ``compact_page`` makes."""
    pool = _admit(block, profiles, catalog)
    n_p, length, pinned = len(profiles), config.row_length, config.pinned_sources
    row_prof = pool.profile
    row = entry_rows(pool.offsets)
    prof, pos = row_prof[row], pool.positions
    index = np.arange(len(row)) - segment_starts(pool.offsets)
    sig = 1.0 / (1.0 + np.exp(-pool.scores.astype(np.float64)))  # as ``_row_value`` squashes them
    names = sorted(set(pool.source))
    src = np.array([names.index(s) for s in pool.source], np.int64)
    is_pinned = np.array([s in pinned for s in pool.source], dtype=bool)
    pinned_value = np.array([1e18 * (len(pinned) - pinned.index(s)) if s in pinned else 0.0 for s in pool.source])
    sizes = np.diff(pool.offsets)
    need = np.minimum(np.where(is_pinned, 1, config.min_row_length), sizes)
    taken = np.zeros((n_p, len(names)), np.int64)
    alive = np.ones(len(pool), bool)
    active = np.bincount(row_prof, minlength=n_p) > 0
    n_chosen = np.zeros(n_p, np.int64)
    seq = np.full(len(pool), -1, np.int64)  # each chosen row's place on its page
    shown_entries = np.zeros(len(row), bool)
    seen = np.zeros((n_p, len(catalog)), bool)

    def values(shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rank = np.cumsum(shown) - 1
        rank -= np.concatenate([[0], np.cumsum(shown)])[pool.offsets[:-1]][row]
        use = shown & (rank < length)
        sig_rows = np.zeros((len(pool), length))
        sig_rows[row[use], rank[use]] = sig[use]
        return row_values(sig_rows, length), rank

    def take(best: np.ndarray, entries: np.ndarray) -> None:
        got = best[best >= 0]
        alive[got] = False
        seq[got] = n_chosen[row_prof[got]]
        n_chosen[row_prof[got]] += 1
        np.add.at(taken, (row_prof[got], src[got]), 1)
        chosen = np.zeros(len(pool), bool)
        chosen[got] = True
        shown_entries[entries & chosen[row]] = True

    for _ in range(min(config.dedupe_top_rows, config.max_rows)):
        if not active.any():
            break
        shown = alive[row] & active[prof] & ~seen[prof, pos]
        value, rank = values(shown)
        count = np.bincount(row, weights=shown, minlength=len(pool))
        value = np.where(is_pinned, pinned_value, value / (1.0 + config.diversity_weight * taken[row_prof, src]))
        ok = alive & active[row_prof] & (count >= need) & (count > 0) & ~np.isnan(value)
        best = _first_best(np.where(ok, value, -np.inf), row_prof, n_p)
        active &= best >= 0  # no row left to show: the page ends here
        take(best, shown & (rank < length))
        placed = shown_entries & ~seen[prof, pos]
        seen[prof[placed], pos[placed]] = True
        active &= (n_chosen < config.max_rows) & (np.bincount(row_prof, weights=alive, minlength=n_p) > 0)
    whole, _ = values(np.ones(len(row), bool))  # the rest: nothing is hidden any more
    while active.any():
        value = np.where(is_pinned, pinned_value, whole / (1.0 + config.diversity_weight * taken[row_prof, src]))
        ok = alive & active[row_prof] & ~np.isnan(value)
        best = _first_best(np.where(ok, value, -np.inf), row_prof, n_p)
        active &= best >= 0
        take(best, index < length)
        active &= (n_chosen < config.max_rows) & (np.bincount(row_prof, weights=alive, minlength=n_p) > 0)
    return _compact(pool, catalog, seq, shown_entries, n_p)


def _compact(pool: RowBlock, catalog: Catalog, seq: np.ndarray, shown: np.ndarray, n_profiles: int) -> list[CompactRows]:
    """Per profile, its chosen rows in page order as ``CompactRows``."""
    row = entry_rows(pool.offsets)
    entries = np.flatnonzero(shown)
    entries = entries[np.lexsort((entries, seq[row[entries]], pool.profile[row[entries]]))]
    ids = catalog.title_ids[pool.positions[entries]]
    scores = np.round(pool.scores[entries].astype(np.float64), 6)  # as served (CompactRows.build)
    chosen = np.flatnonzero(seq >= 0)
    chosen = chosen[np.lexsort((seq[chosen], pool.profile[chosen]))]
    lengths = np.bincount(row[entries], minlength=len(pool))[chosen]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    per_profile = np.searchsorted(pool.profile[chosen], np.arange(n_profiles + 1))
    out = []
    for p in range(n_profiles):
        a, b = per_profile[p], per_profile[p + 1]
        if a == b:
            out.append(CompactRows.empty())
            continue
        headers = tuple(RowHeader(pool.row_id(r), pool.evidence[r] or pool.source[r], pool.source[r], pool.evidence[r])
                        for r in chosen[a:b])
        lo, hi = starts[a], starts[b]
        out.append(CompactRows(headers, (starts[a : b + 1] - lo).astype(np.int64), ids[lo:hi], scores[lo:hi]))
    return out
