"""The page assembler for a block of profiles at once: ``choose_rows`` over a ``RowBlock``.

``choose_block`` gives each profile the rows ``ranking.page.choose_rows`` gives it (same rows,
titles, scores and order), with each greedy step taken for every profile of the block together:
the hard rules re-checked on every title (maturity, licence region, finished: ``ranking.rules``),
de-duplication within a row and across the first ``dedupe_top_rows`` rows, row values as one
padded (rows, row_length) matrix summed per row (``ranking.page.row_values``, the loop's own
function), and each profile's best row as the first maximum of its line in a (profiles, rows of
a profile) grid. Steps: ``dedupe_top_rows`` masked ones, then one per remaining row.

The rows are laid out as a (rows, longest row) grid (``_Grid``) and each title of a row as a code
of its (profile, title), an index into a table the size of the block (``_admit``), which stays in
cache where a (profiles x titles) mask does not. A masked step copies the lines of the rows still
in play (not chosen, of a profile whose page goes on: fewer every step), counts along them the
titles not placed yet, and values again only the rows that lost a title they showed (about half
of them). On the 100k world's blocks of 256 profiles, ~41 ms a block where the whole block's
entries were counted and valued every step took ~98.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from candidates.block import RowBlock, entry_rows, nonzero_2d, pick, row_id, running_count
from pathways.catalog import Catalog
from pathways.config import PageConfig
from pathways.pageblob import encode_raw, header_json, wide_flags
from pathways.types import CompactRows, ProfileContext, RowHeader
from ranking.page import row_values


@dataclass(frozen=True)
class _Grid:
    """A ``RowBlock``'s entries as a (rows, width) grid: row r's entries left-aligned on line r,
    ``width`` its longest row's length (the sources' rows are mostly of one length: little padding)."""

    cells: np.ndarray  # int64 (E,): each entry's flat index in the grid
    shape: tuple[int, int]

    @classmethod
    def of(cls, offsets: np.ndarray) -> _Grid:
        sizes = np.diff(offsets)
        width = int(sizes.max(initial=0))
        shift = np.arange(len(sizes), dtype=np.int64) * width - offsets[:-1]
        return cls(np.arange(int(offsets[-1]), dtype=np.int64) + np.repeat(shift, sizes), (len(sizes), width))

    def spread(self, values: np.ndarray, fill: float) -> np.ndarray:
        """``values`` (E,) on the grid, ``fill`` around them."""
        out = np.empty(self.shape, values.dtype)
        out[...] = fill
        out.ravel()[self.cells] = values
        return out


def _keep(block: RowBlock, idx: np.ndarray) -> RowBlock:
    """The entries ``idx`` (ascending) of ``block``, rows left empty dropped."""
    counts = np.bincount(entry_rows(block.offsets)[idx], minlength=len(block))
    live = np.flatnonzero(counts)
    offsets = np.zeros(len(live) + 1, np.int64)
    np.cumsum(counts[live], out=offsets[1:])
    if len(live) == len(block):
        return RowBlock(block.profile, block.source, block.evidence, block.key, offsets, block.positions[idx],
                        block.scores[idx])
    kept = live.tolist()
    return RowBlock(block.profile[live], pick(block.source, kept), pick(block.evidence, kept), pick(block.key, kept),
                    offsets, block.positions[idx], block.scores[idx])


def _admit(block: RowBlock, profiles: list[ProfileContext],
           catalog: Catalog) -> tuple[RowBlock, _Grid, np.ndarray, np.ndarray]:
    """``RowFilter.admit`` for every row: titles that break no hard rule, each once per row.

    Returns the admitted rows, their grid, the code of each entry's (profile, title) on it and a
    bool table over codes, True where a title may be shown (all but the padding's code). A code is
    the index of one of the block's entries with that (profile, title), found by one scatter of
    the entries' indices into a (titles, profiles) table and one read back: title-major, so the
    popular titles most rows hold sit on a few pages; a cell is read only where written, so the
    table is never cleared. Maturity and licence are looked up per (region, maturity level)
    cohort, the finished titles by their code. Repeats within a row are looked for by sorting each
    line (``_repeats``); the sources' rows hold none, so the first occurrences are only worked
    out when there is one."""
    n_p, n_titles, n = len(profiles), len(catalog), len(block.positions)
    cohorts: dict[tuple[str, int], int] = {}
    cohort = np.fromiter((cohorts.setdefault((p.region, int(p.max_maturity_level)), len(cohorts)) for p in profiles),
                         np.int64, n_p)
    rules = np.zeros((n_titles, len(cohorts)), bool)  # (titles, cohorts): licensed and not too mature
    for (region, level), c in cohorts.items():
        rules[:, c] = catalog.licensed_mask(region) & (catalog.maturity <= level)
    sizes = np.diff(block.offsets)
    pos = block.positions
    known = None if pos.min(initial=0) >= 0 else pos >= 0  # titles out of the catalog: none, as a rule
    if known is not None:
        pos = np.where(known, pos, 0)
    key = pos * n_p + np.repeat(block.profile, sizes)
    table = np.empty(n_p * n_titles, np.int32)  # never cleared: read only where written (or checked)
    table[key] = np.arange(n, dtype=np.int32)
    code = table[key]
    counts = np.fromiter((len(p.finished) for p in profiles), np.int64, n_p)
    at = catalog.positions(np.fromiter(chain.from_iterable(p.finished for p in profiles), np.int64, int(counts.sum())))
    finished_key = (at * n_p + np.repeat(np.arange(n_p), counts))[at >= 0]
    held = table[finished_key].astype(np.int64)  # a code if the block holds the title for the profile, else junk
    real = (held >= 0) & (held < n)
    real[real] = key[held[real]] == finished_key[real]  # junk is out of range or another key's code
    finished = np.zeros(n + 1, bool)
    finished[held[real]] = True
    ok = rules.ravel()[pos * len(cohorts) + np.repeat(cohort[block.profile], sizes)] & ~finished[code]
    if known is not None:
        ok &= known
    if not ok.all() or not sizes.all():  # rows left empty are dropped
        idx = np.flatnonzero(ok)
        block, code = _keep(block, idx), code[idx]
    grid = _Grid.of(block.offsets)
    codes = grid.spread(code, n)
    if _repeats(codes, n):  # the exact first occurrences, as ``RowFilter.admit`` keeps them
        _, first = np.unique(entry_rows(block.offsets) * n_titles + block.positions, return_index=True)
        first.sort()
        block, code = _keep(block, first), code[first]
        grid = _Grid.of(block.offsets)
        codes = grid.spread(code, n)
    free = np.ones(n + 1, bool)
    free[n] = False
    return block, grid, codes, free


def _repeats(codes: np.ndarray, padding: int) -> bool:
    """Whether a line of ``codes`` (a grid of int32 codes, ``padding`` around the rows) holds one
    twice: one short sort per line (~5x faster than one sort of the block's keys)."""
    ordered = np.sort(codes, axis=1)
    return bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != padding)).any())


def _slots(row_prof: np.ndarray, n_profiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's place among its profile's rows (R,), and the rows of each profile in order
    (P, most rows of a profile; -1 past a profile's last)."""
    order = np.argsort(row_prof, kind="stable")
    counts = np.bincount(row_prof, minlength=n_profiles)
    slot = np.empty(len(row_prof), np.int64)
    slot[order] = np.arange(len(row_prof)) - np.repeat(np.cumsum(counts) - counts, counts)
    row_at = np.full((n_profiles, int(counts.max(initial=0))), -1, np.int64)
    row_at[row_prof, slot] = np.arange(len(row_prof))
    return slot, row_at


def _first_best(value: np.ndarray, rows: np.ndarray, row_prof: np.ndarray, slot: np.ndarray,
                row_at: np.ndarray) -> np.ndarray:
    """Per profile, the first of ``rows`` holding its largest ``value`` (> -inf); -1 where none.
    One ``argmax`` over the (profiles, rows of a profile) grid: its first maximum, rows kept in order."""
    grid = np.full(row_at.shape, -np.inf)
    grid[row_prof[rows], slot[rows]] = value
    at = grid.argmax(axis=1)
    line = np.arange(len(grid))
    return np.where(grid[line, at] > -np.inf, row_at[line, at], -1)


def choose_block(block: RowBlock, profiles: list[ProfileContext], catalog: Catalog, config: PageConfig) -> BlockPages:
    """Each profile's chosen rows (``choose_rows``), as ``BlockPages`` (page i: ``compact(i)``, what
    ``compact_page`` makes; ``encode``: the page store's bytes).

    State per row (``alive``: not chosen yet; ``shown``: its titles on the page, a grid line; the
    value it was last given and the titles it showed then) and per (profile, title) code
    (``unseen``: not placed in the first ``dedupe_top_rows`` rows yet). A masked step counts, along
    the lines of the rows still in play, the titles they would still show; a row whose shown titles
    are all still unseen keeps its value, the others are valued again on their first
    ``row_length``. The steps after are valued once, all the rows' titles shown."""
    pool, grid, codes, unseen = _admit(block, profiles, catalog)
    n_p, length, pinned = len(profiles), config.row_length, config.pinned_sources
    width = grid.shape[1]
    row_prof = pool.profile
    sig = grid.spread(1.0 / (1.0 + np.exp(-pool.scores.astype(np.float64))), 0.0)  # as ``_row_value`` squashes them
    names = sorted(set(pool.source))
    index = {s: j for j, s in enumerate(names)}
    src = np.fromiter((index[s] for s in pool.source), np.int64, len(pool))
    pinned_of = np.array([1e18 * (len(pinned) - pinned.index(s)) if s in pinned else 0.0 for s in names])
    is_pinned = pinned_of[src] > 0
    pinned_value = pinned_of[src]
    sizes = np.diff(pool.offsets)
    need = np.minimum(np.where(is_pinned, 1, config.min_row_length), sizes)
    slot, row_at = _slots(row_prof, n_p)
    taken = np.zeros((n_p, len(names)), np.int64)
    alive = np.ones(len(pool), bool)
    left = np.bincount(row_prof, minlength=n_p)  # rows not chosen yet, per profile
    active = left > 0
    seq = np.full(len(pool), -1, np.int64)  # each chosen row's place on its page
    shown = np.zeros(grid.shape, bool)

    def take(got: np.ndarray, lines: np.ndarray, step: int) -> None:
        """Choose the rows ``got`` (one per profile at most) at ``step``, showing ``lines`` of their titles."""
        alive[got] = False
        seq[got] = step
        taken[row_prof[got], src[got]] += 1  # one row per profile: no repeated (profile, source)
        left[row_prof[got]] -= 1
        shown[got] = lines

    raw = np.zeros(len(pool))  # each row's value when its shown titles were last counted
    shows = np.full(len(pool), -1, np.int64)  # how many titles it showed then (-1: never counted)
    reach = np.zeros(len(pool), np.int64)  # the columns they spanned (free titles only get hidden)
    step = 0
    while step < min(config.dedupe_top_rows, config.max_rows) and active.any():
        work = np.flatnonzero(alive & active[row_prof])
        free = np.take(unseen, np.take(codes, work, axis=0))
        before = running_count(free, axis=1)
        count = before[:, -1]
        n_show = np.minimum(count, length)
        redo = before[np.arange(len(work)), np.maximum(reach[work] - 1, 0)] != shows[work]  # lost a shown title
        rows, n_show_r, before_r = work[redo], n_show[redo], before[redo]
        sig_rows = np.zeros((len(rows), length))
        sig_rows[np.arange(length) < n_show_r[:, None]] = np.take(sig, rows, axis=0)[free[redo] & (before_r <= length)]
        raw[rows] = row_values(sig_rows, length)
        shows[rows] = n_show_r
        reach[rows] = (before_r >= n_show_r[:, None]).argmax(axis=1) + 1
        value = np.where(is_pinned[work], pinned_value[work],
                         raw[work] / (1.0 + config.diversity_weight * taken[row_prof[work], src[work]]))
        ok = (count >= need[work]) & (count > 0) & ~np.isnan(value)
        best = _first_best(np.where(ok, value, -np.inf), work, row_prof, slot, row_at)
        active &= best >= 0  # no row left to show: the page ends here
        got = best[best >= 0]
        at = np.searchsorted(work, got)
        lines = free[at] & (before[at] <= length)
        unseen[codes[got][lines]] = False
        take(got, lines, step)
        step += 1
        active &= (left > 0) & (step < config.max_rows)
    work = np.flatnonzero(alive & active[row_prof])  # the rest: nothing is hidden any more
    head = np.zeros((len(work), length))
    head[:, : min(width, length)] = sig[work, :length]
    whole = row_values(head, length)
    columns = np.arange(width)
    while active.any():
        value = np.where(is_pinned[work], pinned_value[work],
                         whole / (1.0 + config.diversity_weight * taken[row_prof[work], src[work]]))
        ok = alive[work] & active[row_prof[work]] & ~np.isnan(value)
        best = _first_best(np.where(ok, value, -np.inf), work, row_prof, slot, row_at)
        active &= best >= 0
        got = best[best >= 0]
        take(got, columns < np.minimum(sizes[got], length)[:, None], step)
        step += 1
        active &= (left > 0) & (step < config.max_rows)
    return _pages(pool, catalog, seq, shown, n_p)


def _row_header(source: str, evidence: str, key: str) -> RowHeader:
    """A chosen row's header: its id, its title (the evidence, else the source), source and evidence."""
    return RowHeader(row_id(source, key), evidence or source, source, evidence)


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
        return _row_header(self.pool.source[r], self.pool.evidence[r], self.pool.key[r])

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
        scores is made per entry for the block and read per page, and the offsets, ids and scores are
        turned into bytes once for the block (each page slices its part: no numpy call per page)."""
        pool, at = self.pool, self.rows.tolist()
        heads = list(zip(pick(pool.source, at), pick(pool.evidence, at), pick(pool.key, at), strict=True))
        fragments = dict.fromkeys(heads, "")
        for head in fragments:
            fragments[head] = header_json(_row_header(*head))
        row_json = list(map(fragments.__getitem__, heads))
        narrow = self.scores.astype(np.float32)
        big = (self.ids > np.iinfo(np.int32).max) | (self.ids < np.iinfo(np.int32).min)
        inexact = np.round(narrow.astype(np.float64), 6) != self.scores
        lo = self.row_offsets[self.page_rows]  # (P + 1,): each page's first entry
        ids_64 = np.diff(np.concatenate([[0], running_count(big)])[lo]) > 0
        scores_64 = np.diff(np.concatenate([[0], running_count(inexact)])[lo]) > 0
        page_of_row = np.searchsorted(self.page_rows, np.arange(len(self.rows)), side="right") - 1
        ends = (self.row_offsets[1:] - lo[page_of_row]).astype("<i4").tobytes()  # each row's end, from its page's start
        ids32, scores32 = self.ids.astype("<i4").tobytes(), narrow.astype("<f4").tobytes()
        zero, out = bytes(4), []  # a page's first offset
        for i, (a, b, first, last, wide_ids, wide_scores) in enumerate(zip(
                self.page_rows[:-1].tolist(), self.page_rows[1:].tolist(), lo[:-1].tolist(), lo[1:].tolist(),
                ids_64.tolist(), scores_64.tolist(), strict=True)):
            ids = self.ids[first:last].astype("<i8").tobytes() if wide_ids else ids32[4 * first : 4 * last]
            scores = self.scores[first:last].astype("<f8").tobytes() if wide_scores else scores32[4 * first : 4 * last]
            out.append(encode_raw(cells[i], row_json[a:b], wide_flags(wide_ids, wide_scores), last - first,
                                  zero + ends[4 * a : 4 * b], ids, scores))
        return out


def _pages(pool: RowBlock, catalog: Catalog, seq: np.ndarray, shown: np.ndarray, n_profiles: int) -> BlockPages:
    """The chosen rows (``seq``: each row's place on its page, -1 if not chosen) and the titles they
    show (``shown``: a grid line per row) as ``BlockPages``: the chosen rows sorted by page and place,
    then their lines read in that order."""
    chosen = np.flatnonzero(seq >= 0)
    chosen = chosen[np.lexsort((seq[chosen], pool.profile[chosen]))]
    lines = shown[chosen]
    line, col = nonzero_2d(lines)
    entries = pool.offsets[chosen][line] + col
    ids = catalog.title_ids[pool.positions[entries]]
    scores = np.round(pool.scores[entries].astype(np.float64), 6)  # as served (CompactRows.build)
    row_offsets = np.zeros(len(chosen) + 1, np.int64)
    np.cumsum(np.count_nonzero(lines, axis=1), out=row_offsets[1:])
    page_rows = np.searchsorted(pool.profile[chosen], np.arange(n_profiles + 1)).astype(np.int64)
    return BlockPages(pool, chosen.astype(np.int64), page_rows, row_offsets, ids, scores)
