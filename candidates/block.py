"""Candidate rows of a block of profiles in long form, and the per-block rule masks sources share.

``RowBlock`` holds every row of every profile of a block as flat arrays: per row its profile
(index into the block), source, evidence and key; per title its catalog position and score, rows
laid end to end (``offsets``). ``ProfileBlock`` holds the block's masks over catalog positions,
one row per profile: ``rules_ok`` (maturity, licence region, not finished: ``ranking.rules``) and
``unseen_ok`` (the same, and not in the history: what personal sources may recommend).

A source's ``generate_block(block)`` returns the same rows as ``generate`` for each profile (same
titles, scores and order), computed with array operations over the whole block instead of a
Python loop per profile and title. Memory: the masks are (profiles in the block, titles) bools,
so a block of 256 profiles over 20k titles holds ~10 MB, whatever the number of profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain

import numpy as np

from candidates.base import CohortRules
from pathways.artifacts.factor_index import FactorIndex
from pathways.catalog import Catalog
from pathways.types import ProfileContext


def pick(values: Sequence[str], at: list[int]) -> tuple[str, ...]:
    """``tuple(values[i] for i in at)``, at C speed."""
    return tuple(map(values.__getitem__, at))


def row_id(source: str, key: str) -> str:
    """A row's id on its page: its source, and its key where it has one (the genre, the anchor title)."""
    return f"{source}:{key}" if key else source


def entry_rows(offsets: np.ndarray) -> np.ndarray:
    """For each entry of rows laid out by ``offsets``, the index of its row (E,)."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def nonzero_2d(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a 2-d bool mask (line, column; row-major order), from one ``flatnonzero``:
    3-5x faster than numpy's 2-d loop on the (lines, titles) masks of a block."""
    flat = np.flatnonzero(mask)
    line = flat // mask.shape[1] if mask.shape[1] else flat
    return line, flat - line * mask.shape[1]


def lookup(mask: np.ndarray, lines: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``mask[lines[:, None], max(columns, 0)]`` for a (P, T) ``mask``: ``columns`` (n, L) or (L,)
    per line; a column -1 reads column 0 (callers mask it out). One flat ``take`` with the index
    built in place: about 2x faster than numpy's 2-d fancy indexing on a block's masks."""
    flat = np.maximum(columns, 0).astype(np.int64, copy=False)  # a new array: the offsets go in in place
    if flat.ndim == 1:
        flat = np.broadcast_to(flat, (len(lines), len(flat))).copy()
    flat += (np.asarray(lines, np.int64) * mask.shape[1])[:, None]
    return mask.reshape(-1).take(flat)


def gather_rows(offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(entry indices of ``rows`` in that order, new offsets) for rows laid out by ``offsets``."""
    lengths = np.diff(offsets)[rows]
    new = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=new[1:])
    idx = np.arange(int(new[-1]), dtype=np.int64) - np.repeat(new[:-1] - offsets[:-1][rows], lengths)
    return idx, new


@dataclass(frozen=True)
class RowBlock:
    """Candidate rows of a block: row r is ``positions/scores[offsets[r]:offsets[r + 1]]``."""

    profile: np.ndarray  # int64 (R,): the row's profile, an index into the block
    source: tuple[str, ...]  # (R,)
    evidence: tuple[str, ...]  # (R,)
    key: tuple[str, ...]  # (R,)
    offsets: np.ndarray  # int64 (R + 1,)
    positions: np.ndarray  # int64 (E,): catalog positions
    scores: np.ndarray  # float32 (E,)

    def __len__(self) -> int:
        return len(self.source)

    @classmethod
    def empty(cls) -> RowBlock:
        return cls(np.zeros(0, np.int64), (), (), (), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @classmethod
    def from_mask(cls, keep: np.ndarray, profiles: np.ndarray, positions: np.ndarray, scores: np.ndarray,
                  source: str, evidence: Sequence[str], key: Sequence[str]) -> RowBlock:
        """One row per line of ``keep`` (n, L) (empty lines dropped): line i shows
        ``positions[i][keep[i]]`` with ``scores[i][keep[i]]``; ``positions``/``scores`` are (n, L) or (L,)."""
        line, col = nonzero_2d(keep)
        pos = positions[line, col] if positions.ndim == 2 else positions[col]
        sc = scores[line, col] if scores.ndim == 2 else scores[col]
        return cls.from_entries(line, len(keep), profiles, pos, sc, source, evidence, key)

    @classmethod
    def from_entries(cls, line: np.ndarray, n: int, profiles: np.ndarray, positions: np.ndarray, scores: np.ndarray,
                     source: str, evidence: Sequence[str], key: Sequence[str]) -> RowBlock:
        """One row per line of ``n`` (lines without an entry dropped): entry j (``line`` ascending)
        shows ``positions[j]`` with ``scores[j]`` on line ``line[j]``, of profile ``profiles[line[j]]``."""
        counts = np.bincount(line, minlength=n)
        live = np.flatnonzero(counts)
        offsets = np.zeros(len(live) + 1, np.int64)
        np.cumsum(counts[live], out=offsets[1:])
        at = live.tolist()
        return cls(np.asarray(profiles, np.int64)[live], (source,) * len(live), pick(evidence, at), pick(key, at),
                   offsets, positions.astype(np.int64), scores.astype(np.float32))

    @staticmethod
    def concat(parts: Sequence[RowBlock]) -> RowBlock:
        """Rows of ``parts`` ordered by profile; within a profile, in the order of ``parts``."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return RowBlock.empty()
        profile = np.concatenate([p.profile for p in parts])
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        offsets = np.zeros(len(profile) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        whole = RowBlock(profile, sum((p.source for p in parts), ()), sum((p.evidence for p in parts), ()),
                         sum((p.key for p in parts), ()), offsets, np.concatenate([p.positions for p in parts]),
                         np.concatenate([p.scores for p in parts]))
        return whole.take(np.argsort(profile, kind="stable"))

    def take(self, rows: np.ndarray) -> RowBlock:
        """The rows ``rows`` (indices), in that order."""
        idx, offsets = gather_rows(self.offsets, rows)
        at = rows.tolist()
        return RowBlock(self.profile[rows], pick(self.source, at), pick(self.evidence, at), pick(self.key, at),
                        offsets, self.positions[idx], self.scores[idx])

    def row_id(self, r: int) -> str:
        return row_id(self.source[r], self.key[r])


def first_occurrences(keys: np.ndarray) -> np.ndarray | None:
    """Indices (ascending) of the first occurrence of each distinct value of ``keys`` (int64 (n,)),
    or None when all are distinct (the common case, found by one fast unstable sort)."""
    ordered = np.sort(keys)
    if not (ordered[1:] == ordered[:-1]).any():
        return None
    _, first = np.unique(keys, return_index=True)
    first.sort()
    return first


def running_count(mask: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.cumsum(mask, axis)`` of a bool mask as int32: the cast made first, then a sum of int32
    into int32. Numpy holds the GIL through a cumsum that casts as it goes (bool into int), and the
    page builder's threads then wait on each other; the cast and the cast-free sum release it."""
    out: np.ndarray = np.cumsum(mask.astype(np.int32), axis=axis, dtype=np.int32)
    return out


def padded(lists: Sequence[np.ndarray], fill: float = -1) -> np.ndarray:
    """(len(lists), longest list) of the lists' dtype (int64 for none): list i on line i,
    left-aligned, ``fill`` after its end."""
    lengths = np.fromiter((len(x) for x in lists), np.int64, len(lists))
    flat = np.concatenate(lists) if len(lists) else np.zeros(0, np.int64)
    out = np.full((len(lists), int(lengths.max(initial=0))), fill, flat.dtype)
    out[np.arange(out.shape[1]) < lengths[:, None]] = flat
    return out


def first_allowed_lists(ok: np.ndarray, lines: np.ndarray, table: np.ndarray, which: np.ndarray | None, k: int,
                        first: int) -> tuple[np.ndarray, np.ndarray]:
    """For line i, the first ``k`` titles ``ok[lines[i]]`` (``ok`` (P, T)) allows in the list of
    catalog positions ``table[which[i]]`` (``table`` (lists, L), sorted best first, -1 after a
    list's end: ``padded``; ``which`` None: every line reads ``table[0]``), as (line, column in its
    list) of each, int64, by line then column; lines that read different lists are done in one
    array pass per round (not one pass per list): each line
    looks at the first ``first`` columns, and only the lines that do not find ``k`` allowed titles
    there (and have more) look at four times as many, until the end of the table."""
    width = table.shape[1]
    ends = (table >= 0).sum(axis=1) if which is not None else np.full(1, width)
    todo = np.arange(len(lines))
    w = min(max(first, k), width)
    got_line, got_col = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    while len(todo) and w:
        cols = table[which[todo], :w] if which is not None else table[0, :w]
        allowed = (cols >= 0) & lookup(ok, lines[todo], cols)
        count = running_count(allowed, axis=1)
        done = (count[:, -1] >= k) | (w >= ends[which[todo] if which is not None else 0])
        line, col = nonzero_2d(allowed & (count <= k) & done[:, None])
        got_line.append(todo[line])
        got_col.append(col)
        todo = todo[~done]
        w = min(4 * w, width)
    line, col = np.concatenate(got_line), np.concatenate(got_col)
    if len(got_line) > 2:  # each round's lines are ascending: a stable sort merges a few sorted runs
        order = np.argsort(line, kind="stable")
        line, col = line[order], col[order]
    return line, col


def rows_of_lists(line: np.ndarray, col: np.ndarray, profiles: np.ndarray, table: np.ndarray, which: np.ndarray | None,
                  scores: np.ndarray, source: str, evidence: Sequence[str], key: Sequence[str]) -> RowBlock:
    """``first_allowed_lists``' titles (``line``, ``col``) as one row per line of ``profiles`` (lines
    without a title dropped, the rest in line order): line i shows ``table[which[i]][col]`` with the
    same cells of ``scores`` (like ``table``: (lists, L))."""
    lists = which[line] if which is not None else 0
    return RowBlock.from_entries(line, len(profiles), profiles, table[lists, col], scores[lists, col], source,
                                 evidence, key)


def first_fetch(k: int, seen: np.ndarray) -> int:
    """How many results ``first_allowed_lists`` reads first: twice what a line needs when the rules
    block nothing (``k`` plus its seen titles), enough for most cohorts in one round."""
    return 2 * (k + int(seen.max(initial=0)))


def first_fetch_lines(k: int, seen: np.ndarray, share: np.ndarray) -> np.ndarray:
    """How many results ``search_first_allowed`` reads first for each line: what the line needs
    (``k`` plus its seen titles) over ``share``, the part of the index's titles its cohort's rules
    allow (``ProfileBlock.allowed_share``: a region's licences, a kids profile's maturity), plus a
    quarter. Most lines then take one round, and a line of an open cohort does not pay for the
    block's most closed one. int64 like ``seen``."""
    need = (k + np.asarray(seen, np.int64)) / np.maximum(np.asarray(share, np.float64), 1e-3)
    return np.ceil(1.25 * need).astype(np.int64)


def _bucket(want: np.ndarray) -> np.ndarray:
    """``want`` (>= 1) rounded up to the next of 64, 96, 128, 192, 256, 384, 512, 768, ... (steps
    of at most 1.5x): lines searched together share one faiss ``k``, so a round makes a few searches
    and reads at most 1.5x the results its lines need."""
    want = np.maximum(np.asarray(want, np.int64), 1)
    power = 2 ** np.ceil(np.log2(np.maximum(want, 64) / 1.5)).astype(np.int64)  # the step just below x1.5
    return np.where(want <= power, power, np.where(want <= 3 * power // 2, 3 * power // 2, 2 * power))


def search_first_allowed(index: FactorIndex, vectors: np.ndarray, query: np.ndarray, ks: np.ndarray,
                         item_positions: np.ndarray, allowed: Callable[[np.ndarray, np.ndarray], np.ndarray],
                         k: int, first_k: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each line i (query ``vectors[query[i]]``): the first ``k`` results among its first
    ``ks[i]`` (faiss order) that ``allowed(lines, positions)`` (bool like ``positions``) allows, as
    (catalog positions int64 (n, k), -1 past the end; scores float32 (n, k)).

    The same titles as one search of ``ks.max()`` results, at the cost of the few a line needs:
    line i first reads ``first_k`` (one for all, or its own: ``first_fetch_lines``) results, rounded
    up to a few sizes (``_bucket``: one faiss search per size and round), and only the lines whose
    first ``k`` allowed titles lie further are searched again with four times as many, up to their
    own ``ks[i]``. Exact: faiss's top ``m`` are the first ``m`` of its top ``n > m`` (ties broken by
    id) and a query's scores do not depend on its batch (both checked in
    ``tests/candidates/test_block_search.py``); each distinct query is searched once per size and round."""
    n = len(query)
    out_pos = np.full((n, k), -1, np.int64)
    out_scores = np.zeros((n, k), np.float32)
    todo = np.arange(n)
    fetch = np.maximum(np.broadcast_to(np.asarray(first_k, np.int64), (n,)), k)
    while len(todo):
        want = np.minimum(np.minimum(fetch[todo], ks[todo]), len(index))
        size = np.minimum(_bucket(want), len(index))
        again = []
        for kk in np.unique(size).tolist():
            lines = todo[size == kk]
            unique, which = np.unique(query[lines], return_inverse=True)
            scores, rows = index.search(vectors[unique], kk)
            scores, rows = scores[which.reshape(-1)], rows[which.reshape(-1)]
            within = (np.arange(kk) < ks[lines, None]) & (rows >= 0)
            pos = np.where(within, item_positions[np.maximum(rows, 0)], -1)
            ok = (pos >= 0) & allowed(lines, pos)
            count = running_count(ok, axis=1)  # once: it gives the first k, whether a line has them, their slots
            done = (count[:, -1] >= k) | (ks[lines] <= kk) | (kk >= len(index))
            line, col = nonzero_2d(ok & (count <= k) & done[:, None])
            at, slot = line * kk + col, lines[line] * k + count[line, col] - 1  # flat: 1-d take and put
            out_pos.reshape(-1)[slot] = pos.reshape(-1)[at]
            out_scores.reshape(-1)[slot] = scores.reshape(-1)[at]
            fetch[lines[~done]] = 4 * kk
            again.append(lines[~done])
        todo = np.sort(np.concatenate(again))
    return out_pos, out_scores


MIN_CUT = 0.25  # a maturity ceiling gets its own index when it rules out at least this share of the items


class LevelIndexes:
    """The index to search for each maturity ceiling: for a ceiling that rules out at least
    ``MIN_CUT`` of ``index``'s items (a kids profile's: about four in five titles of the synthetic
    world), an index of only the items it allows; for the others, ``index`` itself. A kids line then
    searches a fifth of the catalog for ~1.5x the results it needs instead of the whole catalog for
    ~7x (faiss's top-k selection, not its matrix product, is most of a search's cost at these
    ``k``: 8 queries over 20k titles of 64 factors, ~65 us a query for the product, ~250 in all at
    k 192, ~500 at k 1,024). Open ceilings share ``index``: their lines stay in one faiss batch. An
    index of its own for a ceiling ~5% below the top would cut each of its lines' work by ~5% but
    split the batch, each part padded to whole 8-query tiles (``PAD_ROWS``): worked out, not measured.

    ``entry(level)`` is (index, its items' rows in ``index`` or None for ``index`` itself, their
    catalog positions), or None when the ceiling allows none of the items. Built once: the
    sub-indexes hold the allowed items' vectors (a kids index ~20% of ``index``)."""

    def __init__(self, index: FactorIndex, item_positions: np.ndarray, catalog: Catalog) -> None:
        known = item_positions >= 0  # an item outside the catalog is allowed at no level
        maturity = np.where(known, catalog.maturity[np.maximum(item_positions, 0)].astype(np.int64), np.iinfo(np.int64).max)
        self._levels = np.unique(catalog.maturity).astype(np.int64)
        self._entries: dict[int, tuple[FactorIndex, np.ndarray | None, np.ndarray] | None] = {}
        for level in self._levels.tolist():
            rows = np.flatnonzero(maturity <= level)
            if not len(rows):
                self._entries[level] = None
            elif len(rows) <= (1 - MIN_CUT) * len(index):
                self._entries[level] = (index.subset(rows), rows, item_positions[rows])
            else:
                self._entries[level] = (index, None, item_positions)

    def entry(self, level: int) -> tuple[FactorIndex, np.ndarray | None, np.ndarray] | None:
        """The entry of ceiling ``level``: that of the highest catalog level at or below it (the
        same titles), None below every title's level."""
        at = int(np.searchsorted(self._levels, int(level), side="right")) - 1
        return self._entries[int(self._levels[at])] if at >= 0 else None

    def groups(self, levels: np.ndarray) -> list[tuple[np.ndarray, tuple[FactorIndex, np.ndarray | None, np.ndarray]]]:
        """(lines, entry) for each index the lines of maturity ceilings ``levels`` (per line) search,
        lines ascending; lines whose ceiling allows no item are in none."""
        levels = np.asarray(levels, np.int64)
        out: dict[int, tuple[list[np.ndarray], tuple[FactorIndex, np.ndarray | None, np.ndarray]]] = {}
        for level in np.unique(levels).tolist():
            entry = self.entry(level)
            if entry is not None:
                out.setdefault(id(entry[0]), ([], entry))[0].append(np.flatnonzero(levels == level))
        return [(np.sort(np.concatenate(parts)), entry) for parts, entry in out.values()]


def search_by_level(indexes: LevelIndexes, levels: np.ndarray, vectors: np.ndarray, query: np.ndarray, ks: np.ndarray,
                    allowed: Callable[[np.ndarray, np.ndarray], np.ndarray], k: int,
                    first_k: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``search_first_allowed`` of each line in the index of its maturity ceiling ``levels[i]``
    (``LevelIndexes``), one call per index. ``allowed(lines, positions)`` as there, lines of the
    whole batch; ``first_k(lines, item_positions)``: those lines' first fetch, given the catalog
    positions of the index they search (``first_fetch_lines`` of the share it allows)."""
    n = len(query)
    out_pos = np.full((n, k), -1, np.int64)
    out_scores = np.zeros((n, k), np.float32)
    for lines, (index, _, positions) in indexes.groups(levels):
        def allowed_here(sub: np.ndarray, pos: np.ndarray, lines: np.ndarray = lines) -> np.ndarray:
            return allowed(lines[sub], pos)

        pos, scores = search_first_allowed(index, vectors, query[lines], ks[lines], positions, allowed_here, k,
                                           first_k(lines, positions))
        out_pos[lines], out_scores[lines] = pos, scores
    return out_pos, out_scores


def finalize_long(block: ProfileBlock, profile: np.ndarray, positions: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                  ok: np.ndarray, k: int, source: str, evidence: Sequence[str], key: Sequence[str]) -> RowBlock:
    """``candidates.base.finalize`` for one row per line, lines laid end to end: line i is profile
    ``profile[i]`` with ``positions[i]``, ``scores[i]`` (arrays of any length, any order). Titles
    not allowed by ``ok`` (P, T) are dropped, then each line is sorted by score (stable), keeps the
    first occurrence of each title and its ``k`` best."""
    offsets = np.zeros(len(positions) + 1, np.int64)
    np.cumsum(np.fromiter((len(p) for p in positions), np.int64, len(positions)), out=offsets[1:])
    pos = np.concatenate(positions) if len(positions) else np.zeros(0, np.int64)
    sc = np.concatenate(scores) if len(scores) else np.zeros(0, np.float32)
    return finalize_flat(block, profile, offsets, pos, sc, ok, k, source, evidence, key)


def finalize_flat(block: ProfileBlock, profile: np.ndarray, offsets: np.ndarray, positions: np.ndarray,
                  scores: np.ndarray, ok: np.ndarray, k: int, source: str, evidence: Sequence[str],
                  key: Sequence[str]) -> RowBlock:
    """``finalize_long`` of lines already laid end to end: line i (profile ``profile[i]``) is
    ``positions``/``scores[offsets[i]:offsets[i + 1]]`` (one flat array each, as a list reader gives
    them: no per-line arrays to split and join again)."""
    n = len(offsets) - 1
    line = entry_rows(offsets)
    pos = positions.astype(np.int64)
    sc = scores.astype(np.float32)
    keep = pos >= 0
    keep[keep] = ok.reshape(-1).take(profile[line[keep]] * ok.shape[1] + pos[keep])  # ok[profile, pos], one flat take
    line, pos, sc = line[keep], pos[keep], sc[keep]
    if not ((line[1:] != line[:-1]) | (sc[1:] <= sc[:-1])).all():  # lists are mostly sorted already
        order = np.lexsort((-sc, line))
        line, pos, sc = line[order], pos[order], sc[order]
    first = first_occurrences(line * len(block.catalog) + pos)
    if first is not None:
        line, pos, sc = line[first], pos[first], sc[first]
    counts = np.bincount(line, minlength=n)
    top = np.arange(len(line)) - (np.cumsum(counts) - counts)[line] < k  # rank within the line (sorted by line)
    line, pos, sc = line[top], pos[top], sc[top]
    counts = np.bincount(line, minlength=n)
    live = np.flatnonzero(counts)
    offsets = np.zeros(len(live) + 1, np.int64)
    np.cumsum(counts[live], out=offsets[1:])
    at = live.tolist()
    return RowBlock(profile[live].astype(np.int64), (source,) * len(live), pick(evidence, at), pick(key, at), offsets, pos, sc)


class ProfileBlock:
    """A block of profiles and its rule masks over catalog positions (see the module docstring)."""

    def __init__(self, profiles: list[ProfileContext], catalog: Catalog, rules: CohortRules) -> None:
        self.profiles = profiles
        self.catalog = catalog
        self.rules = rules
        cohorts: dict[tuple[str, int], int] = {}
        idx = np.fromiter((cohorts.setdefault((p.region, int(p.max_maturity_level)), len(cohorts)) for p in profiles),
                          np.int64, len(profiles))
        masks = np.stack([rules.mask(r, m) for r, m in cohorts]) if cohorts else np.zeros((0, len(catalog)), bool)
        self.cohort_masks, self.cohort_of = masks, idx  # (cohorts, T) and each profile's cohort
        self.rules_ok = masks[idx] if len(profiles) else np.zeros((0, len(catalog)), bool)  # a new array
        fin_p, fin_pos = self._flat([p.finished for p in profiles])
        self.rules_ok[fin_p, fin_pos] = False
        self.hist_profile, self.hist_ids = self._ids([p.history for p in profiles])
        self.finished_count = np.fromiter((len(p.finished) for p in profiles), np.int64, len(profiles))

    def _ids(self, groups: Sequence[Sequence[int] | frozenset[int]]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter((len(g) for g in groups), np.int64, len(groups))
        ids = np.fromiter(chain.from_iterable(groups), np.int64, int(lengths.sum()))
        return np.repeat(np.arange(len(groups), dtype=np.int64), lengths), ids

    def _flat(self, groups: Sequence[Sequence[int] | frozenset[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(profile index, catalog position) of every title of ``groups`` found in the catalog."""
        prof, ids = self._ids(groups)
        pos = self.catalog.positions(ids)
        return prof[pos >= 0], pos[pos >= 0]

    def allowed_share(self, item_positions: np.ndarray) -> np.ndarray:
        """float (P,): the part of an index's items (their catalog positions, -1: not in the catalog)
        that each profile's cohort rules allow."""
        pos = item_positions[item_positions >= 0]
        if not len(pos) or not len(self.profiles):
            return np.zeros(len(self.profiles))
        counts = np.bincount(pos, minlength=len(self.catalog))
        if counts.max() > 1:
            return (self.cohort_masks[:, pos].sum(axis=1) / len(item_positions))[self.cohort_of]
        # Each title at most once (the usual index): count each cohort's allowed members in one pass.
        allowed = np.count_nonzero(self.cohort_masks & (counts > 0)[None, :], axis=1)
        return (allowed / len(item_positions))[self.cohort_of]

    @cached_property
    def unseen_ok(self) -> np.ndarray:
        """Bool (P, T): ``rules_ok`` and not in the profile's history."""
        ok = self.rules_ok.copy()
        pos = self.catalog.positions(self.hist_ids)
        ok[self.hist_profile[pos >= 0], pos[pos >= 0]] = False
        return ok

    @cached_property
    def seen_count(self) -> np.ndarray:
        """int64 (P,): ``len(seen_titles(profile))`` (distinct history and finished titles)."""
        fin_p, fin_ids = self._ids([p.finished for p in self.profiles])
        prof = np.concatenate([self.hist_profile, fin_p])
        ids = np.concatenate([self.hist_ids, fin_ids])
        if not len(ids):
            return np.zeros(len(self.profiles), np.int64)
        _, code = np.unique(ids, return_inverse=True)  # dense title codes: one int64 key per (profile, title)
        keys = np.unique(prof * (int(code.max()) + 1) + code.reshape(-1))
        return np.bincount(keys // (int(code.max()) + 1), minlength=len(self.profiles)).astype(np.int64)

    @cached_property
    def cohort_ok(self) -> np.ndarray:
        """Bool (P, T): the cohort rules alone (maturity, licence region) for each profile."""
        out: np.ndarray = self.cohort_masks[self.cohort_of]
        return out

    @cached_property
    def blocked(self) -> np.ndarray:
        """int64 (P,): titles the cohort rules block for each profile (``CohortRules.blocked``),
        counted once per cohort."""
        return (len(self.catalog) - self.cohort_masks.sum(axis=1)).astype(np.int64)[self.cohort_of]
