"""Re-scoring a block's candidate rows (``candidates.block.RowBlock``) with each profile's ``RowScorer``.

``rescore_block`` gives every row the scores and order ``RowScorer.score_rows`` gives it for its
profile alone, for every cell of the block in one pass: the (profile, title) pairs of the block
are found with one dense scatter over (profiles, titles), each cell's profile features are one
bulk online read (not cached: memory stays bounded by the block), the features of a cell's pairs
are one matrix (``ranking.features.feature_arrays``, the function training uses), the ranker runs
once per profile segment (``RankerArtifact.predict_segments``: a neural network's float32 output
may change in the last bit with the batch shape; pages must not depend on blocks) and the rows
are re-sorted by their new scores in one padded (rows, longest row) stable sort.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from candidates.block import RowBlock, entry_rows, segment_starts
from pathways.types import ProfileContext
from ranking.features import COUNTS, PROFILE_FEATURES, TITLE_FEATURES, RowScorer, feature_arrays, log_count


def _title_columns(scorer: RowScorer) -> dict[str, np.ndarray]:
    """Per catalog position, each title feature as float32, the counts through ``log_count`` (cached
    on the scorer), and "rank"."""
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
    in ascending groups (``keys // group``: a block's pairs come profile by profile, ``group`` =
    catalog size), one window of whole groups at a time, the mask and its index reused (a few MB,
    not (profiles x titles) x 9 bytes allocated and faulted in for every block); else one window.
    By the sort when the catalog is large next to the block's candidates."""
    if size > 16 * len(keys) or not len(keys):
        uniq, inverse = np.unique(keys, return_inverse=True)
        return uniq, inverse.reshape(-1)
    groups = keys // group
    per = max(1, _WINDOW // group)
    width = per * group
    if bool((groups[1:] >= groups[:-1]).all()) and width < size:
        window = groups // per
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


def _probabilities(scorer: RowScorer, profiles: list[ProfileContext], pair_prof: np.ndarray,
                   pair_pos: np.ndarray, read: tuple[np.ndarray, pd.DataFrame] | None = None) -> np.ndarray:
    """P(play) of each (profile, title) pair, pairs sorted by profile then title id; float32 (n,).
    ``read``: (profile indices, their feature rows) already read for the block (``_block_read``),
    a superset of the pairs' profiles; else this cell's profiles are read here."""
    titles = _title_columns(scorer)
    todo, starts = np.unique(pair_prof, return_index=True)
    local = np.repeat(np.arange(len(todo)), np.diff(np.append(starts, len(pair_prof))))
    if read is None:
        frame = scorer.profile_frame([profiles[i].profile_id for i in todo])
    else:
        frame = read[1].iloc[np.searchsorted(read[0], todo)].reset_index(drop=True)
    cols = {f"p_{f}": pd.to_numeric(frame[f], errors="coerce").to_numpy(np.float32, na_value=np.nan)
            for f in PROFILE_FEATURES if f != "genre_affinity"}
    cols = {c: (log_count(v) if c in COUNTS else v)[local] for c, v in cols.items()}  # logged per profile
    cols.update({name: values[pair_pos] for name, values in titles.items() if name != "rank"})
    genres = scorer._genres
    assert genres is not None  # set with the title features
    per_profile = np.zeros((len(todo), genres.shape[1]), np.float32)
    for j, a in enumerate(frame["genre_affinity"].to_numpy()):
        if a is not None and not (isinstance(a, float) and np.isnan(a)) and len(a) == genres.shape[1]:
            per_profile[j] = a
    regions = sorted({profiles[i].region for i in todo})
    trend = np.stack([_logged_trend(scorer, r) for r in regions])
    region_of = np.array([regions.index(profiles[i].region) for i in todo], np.int64)
    at = scorer.as_of_days if scorer.as_of_days is not None else float(scorer.catalog.release_days.max())
    X = feature_arrays(cols, per_profile[local], trend[region_of[local], pair_pos], pair_pos,
                       np.full(len(pair_pos), at), scorer.catalog, genres, logged=True)
    return scorer.ranker.predict_segments(X, np.append(starts, len(pair_prof)))


def _sort_rows(scores: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Entry order (E,) that sorts each row of ``rows`` (indices, ascending) by descending score,
    ties in their order (as a stable sort does), and keeps every other entry where it is."""
    order = np.arange(len(scores))
    if not len(rows):
        return order
    lengths = np.diff(offsets)[rows]
    width = int(lengths.max())
    slot = np.arange(width)
    inside = slot < lengths[:, None]
    entries = (offsets[:-1][rows][:, None] + slot)[inside]
    padded = np.full((len(rows), width), np.inf, np.float32)
    padded[inside] = -scores[entries]
    perm = np.argsort(padded, axis=1, kind="stable")
    keep = perm < lengths[:, None]  # the padding (inf; after NaN-free scores, but filtered either way)
    order[entries] = (perm + offsets[:-1][rows][:, None])[keep]
    return order


def rescore_block(scorers: Mapping[str, RowScorer], cells: Sequence[str], profiles: list[ProfileContext],
                  block: RowBlock) -> RowBlock:
    """``block`` with each row re-scored as ``scorers[cells[i]].score_rows`` does for its profile i
    (ranker logit, or the learning-to-rank list's standardized score, + ``source_weight`` x the row's
    own rank prior; rows of ``pinned_sources`` keep theirs) and re-sorted by the new scores.
    The scorers share one catalog."""
    names = list(scorers)
    cell_of = np.array([names.index(c) for c in cells], np.int64).reshape(-1)
    lengths = np.diff(block.offsets)
    source_names = sorted(set(block.source))
    code = {s: j for j, s in enumerate(source_names)}
    row_source = np.fromiter((code[s] for s in block.source), np.int64, len(block))
    row_cell = cell_of[block.profile]
    pinned = np.zeros((len(names), max(len(source_names), 1)), bool)
    for j, name in enumerate(names):
        pinned[j, :len(source_names)] = [s in scorers[name].page.pinned_sources for s in source_names]
    scorable = (lengths > 0) & ~pinned[row_cell, row_source] if len(block) else np.zeros(0, bool)
    if not scorable.any():
        return block
    first = scorers[names[0]]
    catalog = first.catalog
    row = entry_rows(block.offsets)
    sel = scorable[row]
    n_titles = len(catalog)
    rank = _title_columns(first)["rank"]
    pairs, inverse = _dense_unique(block.profile[row[sel]] * n_titles + rank[block.positions[sel]],
                                   len(profiles) * n_titles, n_titles)
    by_rank = np.argsort(rank)
    pair_prof, pair_pos = pairs // n_titles, by_rank[pairs % n_titles]
    pair_cell = cell_of[pair_prof]
    read = _block_read(scorers, profiles, pair_prof)
    logit = np.empty(len(pairs), np.float64)
    weight = np.zeros(len(names))
    for j, name in enumerate(names):
        mine = np.flatnonzero(pair_cell == j)
        if not len(mine):
            continue
        scorer = scorers[name]
        weight[j] = scorer.page.source_weight
        probs = np.clip(_probabilities(scorer, profiles, pair_prof[mine], pair_pos[mine], read), 1e-6, 1 - 1e-6)
        part = np.log(probs / (1 - probs)).astype(np.float64)
        if scorer.ltr:
            _learned_order(scorer, profiles, part, pair_prof[mine], pair_pos[mine])
        logit[mine] = part
    index = np.arange(len(row)) - segment_starts(block.offsets)
    prior = 1.0 - index[sel] / np.maximum(lengths[row[sel]], 1)
    scores = block.scores.copy()
    scores[sel] = (logit[inverse] + weight[row_cell[row[sel]]] * prior).astype(np.float32)
    order = _sort_rows(scores, block.offsets, np.flatnonzero(scorable))
    return RowBlock(block.profile, block.source, block.evidence, block.key, block.offsets,
                    block.positions[order], scores[order])


def _block_read(scorers: Mapping[str, RowScorer], profiles: list[ProfileContext],
                pair_prof: np.ndarray) -> tuple[np.ndarray, pd.DataFrame] | None:
    """One online read of the profile features of every profile with pairs to score, for every cell
    (one Feast call a block instead of one a cell: its fixed cost is Python, held under the GIL);
    None when the cells' scorers read different stores (each then reads its own)."""
    stores = {id(s.store) for s in scorers.values()}
    if len(stores) != 1:
        return None
    todo = np.unique(pair_prof)
    return todo, next(iter(scorers.values())).profile_frame([profiles[i].profile_id for i in todo])


def _learned_order(scorer: RowScorer, profiles: list[ProfileContext], logit: np.ndarray, pair_prof: np.ndarray,
                   pair_pos: np.ndarray) -> None:
    """``RowScorer.learned_logits`` for every pair, in place on ``logit`` (pairs sorted by profile):
    each list's standardization per profile (its mean and spread are that list's, computed as the
    loop computes them), the lookups of every pair in every list as one sorted search."""
    assert scorer.ltr is not None
    n_titles = len(scorer.catalog)
    rank = _title_columns(scorer)["rank"]  # keys by title id rank: the pairs' keys come sorted
    starts = np.flatnonzero(np.diff(pair_prof, prepend=-1))
    todo = pair_prof[starts]
    if (np.diff(todo) <= 0).any():
        raise ValueError("pairs must come sorted by profile")
    below = np.full(len(todo), np.nan)  # per profile: the score below its list (NaN: no list)
    keys, values = [], []
    for j, i in enumerate(todo.tolist()):
        listed = scorer.ltr.get(int(profiles[i].profile_id))
        if listed is None or not len(listed[0]):
            continue
        z = (listed[1] - listed[1].mean()) / (listed[1].std() + 1e-6)
        below[j] = float(z.min()) - 1.0
        pos = scorer.catalog.positions(np.asarray(listed[0], dtype=np.int64))
        known = pos >= 0  # a title out of the catalog matches no pair
        keys.append(j * n_titles + rank[pos[known]])
        values.append(np.asarray(z, dtype=np.float64)[known])
    if not keys:
        return
    key, value = np.concatenate(keys), np.concatenate(values)
    order = np.argsort(key, kind="stable")
    last = np.flatnonzero(np.append(key[order][1:] != key[order][:-1], True))  # a repeated title: its last score
    key, value = key[order][last], value[order][last]
    local = np.repeat(np.arange(len(todo)), np.diff(np.append(starts, len(pair_prof))))
    listed_pair = ~np.isnan(below[local])
    wanted = local * n_titles + rank[pair_pos]
    at = np.minimum(np.searchsorted(key, wanted), max(len(key) - 1, 0))
    found = (key[at] == wanted) if len(key) else np.zeros(len(wanted), bool)
    scored = np.where(found, value[at] if len(key) else 0.0, below[local] + 0.01 * logit)
    logit[listed_pair] = scored[listed_pair]
