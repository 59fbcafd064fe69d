"""Re-scoring a block's candidate rows (``candidates.block.RowBlock``) with each profile's ``RowScorer``.

``rescore_block`` gives every row the scores and order ``RowScorer.score_rows`` gives it for its
profile alone, for every cell of the block in one pass: the (profile, title) pairs of the block
are found with one dense scatter over (profiles, titles), the block's profile features are one
bulk online read (not cached: memory stays bounded by the block; ``read_block`` shares it with
``profile_keys``), the features of a cell's pairs are one matrix, ``ranking.features.feature_arrays``'
columns standardized as the ranker does it, each where it has one value a title, region or profile,
then gathered for the pairs (the cross features by the functions training uses), the ranker runs
on them all (``RankerArtifact.predict_segments``: an MLP on tiles of one shape, where a row's bits
do not depend on its neighbours; pages must not depend on blocks), the learning-to-rank lists are read and
standardized for every profile at once, and the rows are re-sorted by their new scores in one
padded (rows, longest row) sort. No step loops over profiles in Python but for a few calls a
profile (two threads build blocks at once: numpy's big operations run without the GIL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from candidates.block import RowBlock
from pathways.artifacts.top_lists import flat_lists
from pathways.types import ProfileContext
from ranking.features import (
    COUNTS,
    FEATURE_COLUMNS,
    TITLE_FEATURES,
    RowScorer,
    genre_match,
    log_count,
    maturity_gap,
    title_age,
)


def _title_columns(scorer: RowScorer) -> dict[str, np.ndarray]:
    """Per catalog position, each title feature as float32, the counts through ``log_count`` (cached
    on the scorer), and "rank"; "by_rank": the position of each rank."""
    cached: dict[str, np.ndarray] | None = getattr(scorer, "_title_cols", None)
    if cached is None:
        titles = scorer._title_features()
        cached = {f"t_{f}": pd.to_numeric(titles[f], errors="coerce").to_numpy(np.float32, na_value=np.nan)
                  for f in TITLE_FEATURES}
        for c in COUNTS & cached.keys():  # as ``feature_arrays`` logs them: once per title, not per pair
            cached[c] = log_count(cached[c])
        ranks = np.empty(len(scorer.catalog), np.int64)
        ranks[np.argsort(scorer.catalog.title_ids, kind="stable")] = np.arange(len(scorer.catalog))
        cached["rank"] = ranks  # each position's rank by title id (pairs sort by id, as np.unique does)
        cached["by_rank"] = np.argsort(ranks)  # the position of each rank
        object.__setattr__(scorer, "_title_cols", cached)
    return cached


def _logged_trend(scorer: RowScorer, region: str) -> np.ndarray:
    """``log_count`` of the region's trending score per catalog position (cached on the scorer)."""
    cached: dict[str, np.ndarray] | None = getattr(scorer, "_logged_trend", None)
    if cached is None:
        cached = {}
        object.__setattr__(scorer, "_logged_trend", cached)
    if region not in cached:
        cached[region] = log_count(scorer._trend(region))
    return cached[region]


def _dense_unique(keys: np.ndarray, size: int, group: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for int64 keys in [0, size). While the keys fill a
    good part of that space, by scatters over a (window,) mask instead of a sort: when the keys come
    in ascending windows of whole groups (``keys // group``: a block's pairs come profile by profile,
    ``group`` = catalog size), one window at a time, the mask and its index reused (a few MB,
    not (profiles x titles) x 9 bytes allocated and faulted in for every block); else one window.
    By the sort when the catalog is large next to the block's candidates."""
    if size > 16 * len(keys) or not len(keys):
        uniq, inverse = np.unique(keys, return_inverse=True)
        return uniq, inverse.reshape(-1)
    width = max(1, _WINDOW // group) * group
    window = keys // width  # (keys // group) // per window: whole groups
    if bool((window[1:] >= window[:-1]).all()) and width < size:
        bounds = np.flatnonzero(window[1:] != window[:-1]) + 1
        starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(keys)]])
    else:
        width, starts, ends = size, np.zeros(1, np.int64), np.array([len(keys)])
    mark = np.zeros(width, bool)
    where = np.empty(width, np.int64)
    uniq_parts, inverse = [], np.empty(len(keys), np.int64)
    found = 0
    for a, b in zip(starts.tolist(), ends.tolist()):
        base = (int(keys[a]) // width) * width
        local = keys[a:b] - base
        mark[local] = True
        uniq = np.flatnonzero(mark)
        mark[uniq] = False
        where[uniq] = np.arange(found, found + len(uniq))
        inverse[a:b] = where[local]
        uniq_parts.append(uniq + base)
        found += len(uniq)
    return (np.concatenate(uniq_parts) if uniq_parts else np.zeros(0, np.int64)), inverse


_WINDOW = 1 << 19  # keys per window of ``_dense_unique``: its mask and index stay in the caches


class ProfileRead(NamedTuple):
    """The profile part of the features of a block's profiles, read once (``_read_profiles``)."""

    profile_index: np.ndarray  # int64 (m,): the profiles, indices into the block, ascending
    columns: np.ndarray  # float32 (len(PROFILE_COLUMNS), m): the ``p_`` features, counts logged
    affinity: np.ndarray  # float32 (m, n_genres): genre affinity, 0 where missing or of another length

    def of(self, index: np.ndarray) -> ProfileRead:
        """The read of the profiles ``index`` (ascending, all read here) as the read of a list of
        just them: profile ``index[j]`` becomes profile j."""
        rows = np.searchsorted(self.profile_index, index)
        return ProfileRead(np.arange(len(index)), self.columns[:, rows], self.affinity[rows])


class Pairs(NamedTuple):
    """A cell's (profile, title) pairs to score, sorted by profile then title id (``Pairs.of``)."""

    key: np.ndarray  # int64 (n,): profile (index into the block) x n_titles + the title's rank by id, ascending
    position: np.ndarray  # int64 (n,): the title's catalog position
    profiles: np.ndarray  # int64 (m,): the distinct profiles, ascending
    bounds: np.ndarray  # int64 (m + 1,): where each profile's pairs start, then n
    local: np.ndarray  # int64 (n,): each pair's profile, an index into ``profiles``

    @classmethod
    def of(cls, key: np.ndarray, profile: np.ndarray, position: np.ndarray) -> Pairs:
        """The pairs of sorted ``key``s, their profiles (ascending, non-negative) and catalog positions
        (n,) each: each profile's pairs found by a sorted search of every profile index up to the last."""
        edges = np.searchsorted(profile, np.arange(int(profile[-1]) + 2 if len(profile) else 1))
        counts = np.diff(edges)
        present = np.flatnonzero(counts)
        bounds = np.append(edges[present], len(key))
        return cls(key, position, present, bounds, np.repeat(np.arange(len(present)), counts[present]))


PROFILE_COLUMNS = [c for c in FEATURE_COLUMNS if c.startswith("p_")]
TITLE_COLUMNS = [*(c for c in FEATURE_COLUMNS if c.startswith("t_")), "x_title_age_days"]  # one value a title
_AT = {c: k for k, c in enumerate(FEATURE_COLUMNS)}


def _read_profiles(scorer: RowScorer, profiles: list[ProfileContext], index: np.ndarray) -> ProfileRead:
    """One online read of the profiles ``index`` (ascending indices into ``profiles``), as arrays:
    the columns ``feature_matrix`` takes from a frame (``pd.to_numeric``, float32, NaN kept), counts
    through ``log_count`` once per profile, not per pair."""
    frame = scorer.profile_frame([profiles[i].profile_id for i in index.tolist()])
    columns = np.stack([pd.to_numeric(frame[c.removeprefix("p_")], errors="coerce").to_numpy(np.float32, na_value=np.nan)
                        for c in PROFILE_COLUMNS])
    for k, c in enumerate(PROFILE_COLUMNS):
        if c in COUNTS:
            columns[k] = log_count(columns[k])
    scorer._title_features()  # sets the genre shares
    genres = scorer._genres
    assert genres is not None
    affinity = np.zeros((len(frame), genres.shape[1]), np.float32)
    for j, a in enumerate(frame["genre_affinity"].to_numpy()):
        if a is not None and not (isinstance(a, float) and np.isnan(a)) and len(a) == genres.shape[1]:
            affinity[j] = a
    return ProfileRead(index, columns, affinity)


def profile_keys(scorer: RowScorer, profiles: list[ProfileContext], index: np.ndarray,
                 read: ProfileRead | None = None) -> list[bytes]:
    """For each profile ``index`` (ascending indices into ``profiles``): the profile features
    ``scorer``'s ranker sees (one online read, as ``rescore_block`` reads them; ``read``: the block's,
    already read by ``read_block``), as bytes: equal bytes, equal features."""
    read = (read if read is not None else _read_profiles(scorer, profiles, index)).of(index)
    return [read.columns[:, j].tobytes() + read.affinity[j].tobytes() for j in range(len(index))]


def _scaled_titles(scorer: RowScorer) -> np.ndarray:
    """The ``TITLE_COLUMNS`` of every catalog title as the ranker sees them, (len(TITLE_COLUMNS),
    n_titles) float32 (``RankerArtifact.standardize``; cached on the scorer): a pair's are its
    title's, so each is computed and standardized once a title instead of once a pair."""
    cached: np.ndarray | None = getattr(scorer, "_scaled_titles", None)
    if cached is None:
        titles = _title_columns(scorer)
        every = np.arange(len(scorer.catalog))
        raw = np.stack([title_age(_at_days(scorer), scorer.catalog, every) if c == "x_title_age_days" else titles[c]
                        for c in TITLE_COLUMNS])
        cached = scorer.ranker.standardize(raw, np.array([_AT[c] for c in TITLE_COLUMNS]))
        object.__setattr__(scorer, "_scaled_titles", cached)
    return cached


def _scaled_trend(scorer: RowScorer, region: str) -> np.ndarray:
    """``r_trending_score`` of every catalog title in ``region`` as the ranker sees it (n_titles,)
    float32 (logged, standardized; cached on the scorer)."""
    cached: dict[str, np.ndarray] | None = getattr(scorer, "_scaled_trend", None)
    if cached is None:
        cached = {}
        object.__setattr__(scorer, "_scaled_trend", cached)
    if region not in cached:
        k = _AT["r_trending_score"]
        cached[region] = scorer.ranker.standardize(_logged_trend(scorer, region)[None], slice(k, k + 1))[0]
    return cached[region]


def _at_days(scorer: RowScorer) -> float:
    """The moment the scorer's pairs are scored at, in days since the epoch (as ``score_block``)."""
    return scorer.as_of_days if scorer.as_of_days is not None else float(scorer.catalog.release_days.max())


def _probabilities(scorer: RowScorer, profiles: list[ProfileContext], pairs: Pairs,
                   read: ProfileRead | None = None) -> np.ndarray:
    """P(play) of each (profile, title) pair of ``pairs``; float32 (n,).
    ``read``: the profile features already read for the block (``_block_read``), a superset of the
    pairs' profiles; else this cell's profiles are read here.

    The ranker's input is ``feature_arrays``' matrix standardized (``RankerArtifact.standardize``,
    element-wise): each column is standardized where it has one value per profile, title or region
    (``_scaled_titles``, ``_scaled_trend``) and gathered for the pairs into one (features, pairs)
    array, the two cross features computed per pair (``genre_match``, ``maturity_gap``), then one
    transposing copy: the matrix ``predict_segments`` would standardize itself, to the bit, without
    18 gathered columns, their stack and three passes over the (pairs, features) rows."""
    todo, local, pair_pos = pairs.profiles, pairs.local, pairs.position
    if read is None:
        read = _read_profiles(scorer, profiles, todo)
    rows = np.searchsorted(read.profile_index, todo)
    titles = _scaled_titles(scorer)
    ranker, genres = scorer.ranker, scorer._genres
    assert genres is not None  # set with the title features
    X = np.empty((len(FEATURE_COLUMNS), len(pair_pos)), np.float32)
    mine = ranker.standardize(read.columns[:, rows], np.array([_AT[c] for c in PROFILE_COLUMNS]))
    for k, c in enumerate(PROFILE_COLUMNS):
        np.take(mine[k], local, out=X[_AT[c]])
    for k, c in enumerate(TITLE_COLUMNS):
        np.take(titles[k], pair_pos, out=X[_AT[c]])
    regions = sorted({profiles[i].region for i in todo.tolist()})
    region_of = np.array([regions.index(profiles[i].region) for i in todo.tolist()], np.int64)
    trend = np.concatenate([_scaled_trend(scorer, r) for r in regions])
    np.take(trend, region_of[local] * len(scorer.catalog) + pair_pos, out=X[_AT["r_trending_score"]])
    affinity = np.take(read.affinity[rows], local, axis=0)
    level = np.take(read.columns[PROFILE_COLUMNS.index("p_max_maturity_level"), rows], local)
    cross = np.array([_AT["x_genre_match"], _AT["x_maturity_gap"]])
    X[cross] = ranker.standardize(np.stack([genre_match(affinity, genres, pair_pos),
                                            maturity_gap(level, scorer.catalog, pair_pos)]), cross)
    return ranker.predict_segments(np.ascontiguousarray(X.T), pairs.bounds, standardized=True)


def _sort_rows(scores: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Entry order (E,) that sorts each row of ``rows`` (indices, ascending) by descending score,
    ties in their order (as a stable sort does; NaN last), and keeps every other entry where it is.
    One padded (rows, longest row) sort of uint64 keys, the score's order in the high half and the
    entry's place in its row in the low half: unique keys, so numpy's vectorized quicksort gives
    the stable order (its stable sort of floats is a merge sort, ~4x slower)."""
    order = np.arange(len(scores))
    if not len(rows):
        return order
    lengths = np.diff(offsets)[rows]
    width = int(lengths.max())
    slot = np.arange(width)
    inside = slot < lengths[:, None]
    entries = (offsets[:-1][rows][:, None] + slot)[inside]
    keys = np.full((len(rows), width), 0xFFFFFFFF, np.uint64)  # the padding: after every score, NaN too
    keys[inside] = _descending(scores[entries])
    keys <<= np.uint64(32)
    keys |= slot.astype(np.uint64)
    keys.sort(axis=1)
    order[entries] = ((keys & np.uint64(0xFFFFFFFF)).astype(np.int64) + offsets[:-1][rows][:, None])[inside]
    return order


def _descending(scores: np.ndarray) -> np.ndarray:
    """uint32 keys (n,) of float32 ``scores`` whose ascending order is the scores' descending order
    as numpy sorts floats: -0.0 equal to 0.0, every NaN last (0xFFFFFFFF)."""
    negated = -np.asarray(scores, np.float32) + np.float32(0.0)  # -0.0 + 0.0 is +0.0
    bits = negated.view(np.uint32)
    keys = np.where(bits >> np.uint32(31) != 0, ~bits, bits | np.uint32(0x80000000))  # IEEE order as unsigned
    keys[np.isnan(negated)] = 0xFFFFFFFF
    return keys


def rescore_block(scorers: Mapping[str, RowScorer], cells: Sequence[str], profiles: list[ProfileContext],
                  block: RowBlock, read: ProfileRead | None = None) -> RowBlock:
    """``block`` with each row re-scored as ``scorers[cells[i]].score_rows`` does for its profile i
    (ranker logit, or the learning-to-rank list's standardized score, + ``source_weight`` x the row's
    own rank prior; rows of ``pinned_sources`` keep theirs) and re-sorted by the new scores.
    The scorers share one catalog. ``read``: the profiles' features, when already read for every
    cell (``read_block``: it must cover every profile with rows to score)."""
    names = list(scorers)
    cell_of = np.array([names.index(c) for c in cells], np.int64).reshape(-1)
    lengths = np.diff(block.offsets)
    source_names = sorted(set(block.source))
    code = {s: j for j, s in enumerate(source_names)}
    row_source = np.fromiter(map(code.__getitem__, block.source), np.int64, len(block))
    row_cell = cell_of[block.profile]
    pinned = np.zeros((len(names), max(len(source_names), 1)), bool)
    for j, name in enumerate(names):
        pinned[j, :len(source_names)] = [s in scorers[name].page.pinned_sources for s in source_names]
    scorable = (lengths > 0) & ~pinned[row_cell, row_source] if len(block) else np.zeros(0, bool)
    if not scorable.any():
        return block
    first = scorers[names[0]]
    n_titles = len(first.catalog)
    titles = _title_columns(first)
    rows = np.flatnonzero(scorable)
    counts = lengths[rows]
    chosen_row = np.repeat(rows, counts)  # the entries to re-score: their rows, places in the rows, indices
    slot = np.arange(len(chosen_row)) - np.repeat(np.cumsum(counts) - counts, counts)
    chosen = block.offsets[chosen_row] + slot
    pairs, inverse = _dense_unique(block.profile[chosen_row] * n_titles + titles["rank"][block.positions[chosen]],
                                   len(profiles) * n_titles, n_titles)
    pair_prof, pair_rank = np.divmod(pairs, n_titles)
    pair_pos = titles["by_rank"][pair_rank]
    pair_cell = cell_of[pair_prof]
    read = read if read is not None else _block_read(scorers, profiles, np.unique(pair_prof))
    logit = np.empty(len(pairs), np.float64)
    weight = np.zeros(len(names))
    for j, name in enumerate(names):
        mine = np.flatnonzero(pair_cell == j)
        if not len(mine):
            continue
        scorer = scorers[name]
        weight[j] = scorer.page.source_weight
        cell = Pairs.of(pairs[mine], pair_prof[mine], pair_pos[mine])
        probs = np.clip(_probabilities(scorer, profiles, cell, read), 1e-6, 1 - 1e-6)
        part = np.log(probs / (1 - probs)).astype(np.float64)
        if scorer.ltr:
            _learned_order(scorer, profiles, part, cell)
        logit[mine] = part
    prior = 1.0 - slot / np.repeat(np.maximum(counts, 1), counts)
    scores = block.scores.copy()
    scores[chosen] = (logit[inverse] + np.repeat(weight[row_cell[rows]], counts) * prior).astype(np.float32)
    order = _sort_rows(scores, block.offsets, rows)
    return RowBlock(block.profile, block.source, block.evidence, block.key, block.offsets,
                    block.positions[order], scores[order])


def _block_read(scorers: Mapping[str, RowScorer], profiles: list[ProfileContext],
                index: np.ndarray) -> ProfileRead | None:
    """One online read of the profile features of the profiles ``index`` (ascending) for every cell
    (one Feast call a block instead of one a cell: its fixed cost is Python, held under the GIL);
    None when the cells' scorers read different stores (each then reads its own)."""
    stores = {id(s.store) for s in scorers.values()}
    if len(stores) != 1:
        return None
    return _read_profiles(next(iter(scorers.values())), profiles, index)


def read_block(scorers: Mapping[str, RowScorer], profiles: list[ProfileContext]) -> ProfileRead | None:
    """``_block_read`` of every profile of a block: one read that ``profile_keys`` and
    ``rescore_block`` share (None when the cells read different stores)."""
    return _block_read(scorers, profiles, np.arange(len(profiles)))


def _list_zscores(scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Each list ``scores[bounds[k]:bounds[k + 1]]`` standardized as ``RowScorer.learned_logits`` does
    it alone, ``(v - v.mean()) / (v.std() + 1e-6)``, to the bit, for every list in a few passes: the
    element-wise steps (deviation, square, division) over all lists at once, the two sums of each
    list by ``np.add.reduce`` on its own contiguous slice (numpy's pairwise summation depends on the
    length and start of the array it sums: one sum across lists, by ``reduceat`` or padding, would
    change bits), and the divisions by the count in float64 as ``_methods._mean``/``_var`` do."""
    counts = np.diff(bounds)
    edges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    local = np.repeat(np.arange(len(counts)), counts)
    sums = np.array([np.add.reduce(scores[a:b]) for a, b in edges], scores.dtype)
    dev = scores - (sums / counts).astype(scores.dtype)[local]
    squares = np.square(dev)
    spread = np.array([np.add.reduce(squares[a:b]) for a, b in edges], scores.dtype)
    std = np.sqrt((spread / counts).astype(scores.dtype))
    z: np.ndarray = dev / (std + 1e-6)[local]
    return z


def _learned_order(scorer: RowScorer, profiles: list[ProfileContext], logit: np.ndarray, pairs: Pairs) -> None:
    """``RowScorer.learned_logits`` for every pair, in place on ``logit``: the lists of the pairs'
    profiles read at once (``flat_lists``), each list's standardization its own (``_list_zscores``),
    and every list item found among the pairs by one sorted search of its pair key (a block's lists
    hold fewer items than its pairs: ~52k against ~184k)."""
    assert scorer.ltr is not None
    n_titles = len(scorer.catalog)
    rank = _title_columns(scorer)["rank"]
    ids = np.fromiter((profiles[i].profile_id for i in pairs.profiles.tolist()), np.int64, len(pairs.profiles))
    bounds, titles, scores = flat_lists(scorer.ltr, ids)
    listed = np.flatnonzero(np.diff(bounds) > 0)
    if not len(listed):
        return
    bounds = np.append(bounds[listed], bounds[-1])  # the non-empty lists (the empty ones hold no items)
    z = _list_zscores(scores, bounds)
    below = np.full(len(pairs.profiles), np.nan)  # per profile: the score below its list (NaN: no list)
    below[listed] = np.minimum.reduceat(z, bounds[:-1]).astype(np.float64) - 1.0
    pos = scorer.catalog.positions(titles)
    known = np.flatnonzero(pos >= 0)  # a title out of the catalog matches no pair
    key = np.repeat(pairs.profiles[listed], np.diff(bounds))[known] * n_titles + rank[pos[known]]
    at = np.minimum(np.searchsorted(pairs.key, key), len(pairs.key) - 1)
    hit = np.flatnonzero(pairs.key[at] == key)
    last = np.full(len(pairs.key), -1)  # per pair: its last item in the list (a repeated title: its last score)
    np.maximum.at(last, at[hit], known[hit])
    listed_pair = ~np.isnan(below[pairs.local])
    scored = np.where(last >= 0, z.astype(np.float64)[last], below[pairs.local] + 0.01 * logit)
    logit[listed_pair] = scored[listed_pair]
