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

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from candidates.block import RowBlock, entry_rows, first_occurrences, gather_rows, pick, running_count, segment_starts
from pathways.catalog import Catalog
from pathways.config import PageConfig
from pathways.pageblob import encode_prepared, header_json, wide_flags
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
    counts = np.fromiter((len(p.finished) for p in profiles), np.int64, len(profiles))
    at = catalog.positions(np.fromiter(chain.from_iterable(p.finished for p in profiles), np.int64, int(counts.sum())))
    who = np.repeat(np.arange(len(profiles)), counts)
    finished[who[at >= 0], at[at >= 0]] = True
    ok = (pos >= 0) & (catalog.maturity[pos] <= level[prof]) & licensed[region[prof], pos] & ~finished[prof, pos]
    idx = np.flatnonzero(ok)
    first = first_occurrences(row[idx] * len(catalog) + pos[idx])
    if first is not None:
        idx = idx[first]
    counts = np.bincount(row[idx], minlength=len(block))
    live = np.flatnonzero(counts)
    offsets = np.zeros(len(live) + 1, np.int64)
    np.cumsum(counts[live], out=offsets[1:])
    if len(live) == len(block):
        return RowBlock(block.profile, block.source, block.evidence, block.key, offsets, pos[idx], block.scores[idx])
    kept = live.tolist()
    return RowBlock(block.profile[live], pick(block.source, kept), pick(block.evidence, kept), pick(block.key, kept),
                    offsets, pos[idx], block.scores[idx])


def _first_best(value: np.ndarray, row_prof: np.ndarray, n_profiles: int) -> np.ndarray:
    """Per profile, the first row holding its segment's largest ``value`` (> -inf); -1 where none."""
    best = np.full(n_profiles, -np.inf)
    np.maximum.at(best, row_prof, value)
    hit = np.flatnonzero((value == best[row_prof]) & (value > -np.inf))
    out = np.full(n_profiles, -1, np.int64)
    prof, first = np.unique(row_prof[hit], return_index=True)
    out[prof] = hit[first]
    return out


def choose_block(block: RowBlock, profiles: list[ProfileContext], catalog: Catalog, config: PageConfig) -> BlockPages:
    """Each profile's chosen rows (``choose_rows``), as ``BlockPages`` (page i: ``compact(i)``, what
    ``compact_page`` makes; ``encode``: the page store's bytes).

    State per entry, kept up to date step by step rather than recomputed: ``live`` (its row is not
    chosen yet) and ``hidden`` (its title is already placed on the profile's page in the first
    ``dedupe_top_rows`` rows: one flat (profiles x titles) mask, looked up by each entry's key)."""
    pool = _admit(block, profiles, catalog)
    n_p, length, pinned = len(profiles), config.row_length, config.pinned_sources
    n_titles = len(catalog)
    row_prof = pool.profile
    row = entry_rows(pool.offsets)
    starts = pool.offsets[:-1]
    prof, pos = row_prof[row], pool.positions
    key = prof * n_titles + pos
    index = np.arange(len(row)) - segment_starts(pool.offsets)
    sig = 1.0 / (1.0 + np.exp(-pool.scores.astype(np.float64)))  # as ``_row_value`` squashes them
    names = sorted(set(pool.source))
    code = {s: j for j, s in enumerate(names)}
    src = np.fromiter((code[s] for s in pool.source), np.int64, len(pool))
    pinned_of = np.array([1e18 * (len(pinned) - pinned.index(s)) if s in pinned else 0.0 for s in names])
    is_pinned = pinned_of[src] > 0
    pinned_value = pinned_of[src]
    sizes = np.diff(pool.offsets)
    need = np.minimum(np.where(is_pinned, 1, config.min_row_length), sizes)
    taken = np.zeros((n_p, len(names)), np.int64)
    alive = np.ones(len(pool), bool)
    active = np.bincount(row_prof, minlength=n_p) > 0
    n_chosen = np.zeros(n_p, np.int64)
    seq = np.full(len(pool), -1, np.int64)  # each chosen row's place on its page
    shown_entries = np.zeros(len(row), bool)
    seen = np.zeros(n_p * n_titles, bool)  # (profile, title) already placed, flat
    live = np.ones(len(row), bool)
    hidden = np.zeros(len(row), bool)

    def values(use: np.ndarray, rank: np.ndarray) -> np.ndarray:
        at = np.flatnonzero(use)
        sig_rows = np.zeros((len(pool), length))
        sig_rows.ravel()[row[at] * length + rank[at]] = sig[at]
        return row_values(sig_rows, length)

    def take(best: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """Choose the rows ``best`` (-1: none); returns the entries they place (``shown`` among theirs)."""
        got = best[best >= 0]
        alive[got] = False
        seq[got] = n_chosen[row_prof[got]]
        n_chosen[row_prof[got]] += 1
        np.add.at(taken, (row_prof[got], src[got]), 1)
        entries, _ = gather_rows(pool.offsets, got)
        live[entries] = False
        placed = entries[shown[entries]]
        shown_entries[placed] = True
        return placed

    for _ in range(min(config.dedupe_top_rows, config.max_rows)):
        if not active.any():
            break
        shown = live & ~hidden
        before = running_count(shown)  # blocks hold far fewer than 2**31 entries
        base = before[starts] - shown[starts]  # shown entries before each row's first
        rank = before - 1 - base[row]
        count = np.where(sizes > 0, before[pool.offsets[1:] - 1] - base, 0)
        use = shown & (rank < length)
        value = values(use, rank)
        value = np.where(is_pinned, pinned_value, value / (1.0 + config.diversity_weight * taken[row_prof, src]))
        ok = alive & active[row_prof] & (count >= need) & (count > 0) & ~np.isnan(value)
        best = _first_best(np.where(ok, value, -np.inf), row_prof, n_p)
        active &= best >= 0  # no row left to show: the page ends here (its entries stay live: no row is ok)
        placed = take(best, use)
        seen[key[placed]] = True
        hidden |= seen[key]
        active &= (n_chosen < config.max_rows) & (np.bincount(row_prof, weights=alive, minlength=n_p) > 0)
    whole = values(index < length, index)  # the rest: nothing is hidden any more
    first = index < length
    while active.any():
        value = np.where(is_pinned, pinned_value, whole / (1.0 + config.diversity_weight * taken[row_prof, src]))
        ok = alive & active[row_prof] & ~np.isnan(value)
        best = _first_best(np.where(ok, value, -np.inf), row_prof, n_p)
        active &= best >= 0
        take(best, first)
        active &= (n_chosen < config.max_rows) & (np.bincount(row_prof, weights=alive, minlength=n_p) > 0)
    return _pages(pool, catalog, seq, shown_entries, n_p)


@dataclass(frozen=True)
class BlockPages:
    """The pages ``choose_block`` built for a block, as arrays: page i's rows are the ``pool`` rows
    ``rows[page_rows[i]:page_rows[i + 1]]`` in page order; chosen row j shows ``ids``/``scores``
    ``[row_offsets[j]:row_offsets[j + 1]]`` (scores float64, rounded to 6 decimals as served)."""

    pool: RowBlock
    rows: np.ndarray  # int64 (C,)
    page_rows: np.ndarray  # int64 (P + 1,)
    row_offsets: np.ndarray  # int64 (C + 1,)
    ids: np.ndarray  # int64 (n,)
    scores: np.ndarray  # float64 (n,)

    def __len__(self) -> int:
        return len(self.page_rows) - 1

    def n_rows(self, i: int) -> int:
        return int(self.page_rows[i + 1] - self.page_rows[i])

    def _header(self, r: int) -> RowHeader:
        pool = self.pool
        return RowHeader(pool.row_id(r), pool.evidence[r] or pool.source[r], pool.source[r], pool.evidence[r])

    def compact(self, i: int) -> CompactRows:
        """Page i as ``CompactRows`` (what ``compact_page`` makes of ``choose_rows``' rows)."""
        a, b = int(self.page_rows[i]), int(self.page_rows[i + 1])
        if a == b:
            return CompactRows.empty()
        lo, hi = self.row_offsets[a], self.row_offsets[b]
        return CompactRows(tuple(self._header(int(r)) for r in self.rows[a:b]),
                           (self.row_offsets[a : b + 1] - lo).astype(np.int64), self.ids[lo:hi], self.scores[lo:hi])

    def encode(self, cells: Sequence[str]) -> list[bytes]:
        """Page i as ``encode_page(cells[i], self.compact(i))`` gives it, byte for byte, for every page:
        each distinct row header is JSON-encoded once per block, the narrow-or-wide choice of ids and
        scores is made per entry for the block and read per page."""
        fragments: dict[tuple[str, str, str], str] = {}
        pool = self.pool
        row_json = []
        for r in self.rows.tolist():
            at = (pool.source[r], pool.evidence[r], pool.key[r])
            got = fragments.get(at)
            if got is None:
                got = fragments[at] = header_json(self._header(r))
            row_json.append(got)
        narrow = self.scores.astype(np.float32)
        big = (self.ids > np.iinfo(np.int32).max) | (self.ids < np.iinfo(np.int32).min)
        inexact = np.round(narrow.astype(np.float64), 6) != self.scores
        wide = np.concatenate([[0], running_count(big)]), np.concatenate([[0], running_count(inexact)])
        ids32, ids64 = self.ids.astype("<i4"), self.ids.astype("<i8")
        scores32, scores64 = narrow.astype("<f4"), self.scores.astype("<f8")
        out = []
        for i, (a, b) in enumerate(zip(self.page_rows[:-1].tolist(), self.page_rows[1:].tolist())):
            lo, hi = int(self.row_offsets[a]), int(self.row_offsets[b])
            ids_64, scores_64 = bool(wide[0][hi] > wide[0][lo]), bool(wide[1][hi] > wide[1][lo])
            out.append(encode_prepared(cells[i], row_json[a:b], self.row_offsets[a : b + 1] - lo,
                                       wide_flags(ids_64, scores_64), (ids64 if ids_64 else ids32)[lo:hi],
                                       (scores64 if scores_64 else scores32)[lo:hi]))
        return out


def _pages(pool: RowBlock, catalog: Catalog, seq: np.ndarray, shown: np.ndarray, n_profiles: int) -> BlockPages:
    """The chosen rows (``seq``: each row's place on its page, -1 if not chosen) and the titles they
    show (``shown``, per entry) as ``BlockPages``."""
    row = entry_rows(pool.offsets)
    entries = np.flatnonzero(shown)
    entries = entries[np.lexsort((entries, seq[row[entries]], pool.profile[row[entries]]))]
    ids = catalog.title_ids[pool.positions[entries]]
    scores = np.round(pool.scores[entries].astype(np.float64), 6)  # as served (CompactRows.build)
    chosen = np.flatnonzero(seq >= 0)
    chosen = chosen[np.lexsort((seq[chosen], pool.profile[chosen]))]
    lengths = np.bincount(row[entries], minlength=len(pool))[chosen]
    row_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    page_rows = np.searchsorted(pool.profile[chosen], np.arange(n_profiles + 1)).astype(np.int64)
    return BlockPages(pool, chosen.astype(np.int64), page_rows, row_offsets, ids, scores)
