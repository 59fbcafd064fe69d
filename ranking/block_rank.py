"""Re-scoring a block's candidate rows (``candidates.block.RowBlock``) with one cell's ``RowScorer``.

``rescore_block`` gives every row the scores and order ``RowScorer.score_rows`` gives it for its
profile alone: the (profile, title) pairs of the block are found with one ``np.unique``, their
features are one matrix (``ranking.features.feature_arrays``, the function training uses), and
each title's new score is one vectorized lookup. The ranker runs once per profile for the MLP (a
neural network's float32 output may change in the last bit with the batch size; pages must not
depend on blocks) and once per block for gradient-boosted trees (each row scored on its own).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from candidates.block import RowBlock, entry_rows, segment_starts
from pathways.types import ProfileContext
from ranking.features import PROFILE_FEATURES, TITLE_FEATURES, RowScorer, feature_arrays


def _title_columns(scorer: RowScorer) -> dict[str, np.ndarray]:
    """Per catalog position, each title feature as float32 (cached on the scorer)."""
    cached: dict[str, np.ndarray] | None = getattr(scorer, "_title_cols", None)
    if cached is None:
        titles = scorer._title_features()
        cached = {f"t_{f}": pd.to_numeric(titles[f], errors="coerce").to_numpy(np.float32, na_value=np.nan)
                  for f in TITLE_FEATURES}
        ranks = np.empty(len(scorer.catalog), np.int64)
        ranks[np.argsort(scorer.catalog.title_ids, kind="stable")] = np.arange(len(scorer.catalog))
        cached["rank"] = ranks  # each position's rank by title id (pairs sort by id, as np.unique does)
        object.__setattr__(scorer, "_title_cols", cached)
    return cached


def _probabilities(scorer: RowScorer, profiles: list[ProfileContext], pair_prof: np.ndarray,
                   pair_pos: np.ndarray) -> np.ndarray:
    """P(play) of each (profile, title) pair, pairs sorted by profile then title id; float32 (n,)."""
    titles = _title_columns(scorer)
    todo, starts = np.unique(pair_prof, return_index=True)
    local = np.repeat(np.arange(len(todo)), np.diff(np.append(starts, len(pair_prof))))
    missing = [profiles[i].profile_id for i in todo if profiles[i].profile_id not in scorer._profiles]
    if missing:
        scorer.prefetch(missing)
    frame = pd.DataFrame([scorer._profiles[profiles[i].profile_id] for i in todo])
    cols = {f"p_{f}": pd.to_numeric(frame[f], errors="coerce").to_numpy(np.float32, na_value=np.nan)[local]
            for f in PROFILE_FEATURES if f != "genre_affinity"}
    cols.update({name: values[pair_pos] for name, values in titles.items() if name != "rank"})
    genres = scorer._genres
    assert genres is not None  # set with the title features
    per_profile = np.zeros((len(todo), genres.shape[1]), np.float32)
    for j, a in enumerate(frame["genre_affinity"].to_numpy()):
        if a is not None and not (isinstance(a, float) and np.isnan(a)) and len(a) == genres.shape[1]:
            per_profile[j] = a
    regions = sorted({profiles[i].region for i in todo})
    trend = np.stack([scorer._trend(r) for r in regions])
    region_of = np.array([regions.index(profiles[i].region) for i in todo], np.int64)
    at = scorer.as_of_days if scorer.as_of_days is not None else float(scorer.catalog.release_days.max())
    X = feature_arrays(cols, per_profile[local], trend[region_of[local], pair_pos], pair_pos,
                       np.full(len(pair_pos), at), scorer.catalog, genres)
    if scorer.ranker.kind == "gbdt":  # trees score each row on its own: one call for the block
        return scorer.ranker.predict(X)
    bounds = np.append(starts, len(pair_prof))
    return np.concatenate([scorer.ranker.predict(X[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])


def rescore_block(scorer: RowScorer, profiles: list[ProfileContext], block: RowBlock, selected: np.ndarray) -> RowBlock:
    """``block`` with the rows ``selected`` (bool (R,)) re-scored as ``scorer.score_rows`` does
    (ranker logit, or the learning-to-rank list's standardized score, + ``source_weight`` x the
    row's own rank prior; rows of ``pinned_sources`` keep theirs) and re-sorted by the new scores."""
    pinned = scorer.page.pinned_sources
    lengths = np.diff(block.offsets)
    scorable = selected & (lengths > 0) & np.array([s not in pinned for s in block.source], dtype=bool)
    if not scorable.any():
        return block
    row = entry_rows(block.offsets)
    sel = scorable[row]
    n_titles = len(scorer.catalog)
    rank = _title_columns(scorer)["rank"]
    pairs, inverse = np.unique(block.profile[row[sel]] * n_titles + rank[block.positions[sel]], return_inverse=True)
    by_rank = np.argsort(rank)
    pair_prof, pair_pos = pairs // n_titles, by_rank[pairs % n_titles]
    probs = np.clip(_probabilities(scorer, profiles, pair_prof, pair_pos), 1e-6, 1 - 1e-6)
    logit = np.log(probs / (1 - probs)).astype(np.float64)
    if scorer.ltr:
        _learned_order(scorer, profiles, logit, pair_prof, scorer.catalog.title_ids[pair_pos])
    index = np.arange(len(row)) - segment_starts(block.offsets)
    prior = 1.0 - index[sel] / np.maximum(lengths[row[sel]], 1)
    scores = block.scores.copy()
    scores[sel] = (logit[inverse] + scorer.page.source_weight * prior).astype(np.float32)
    order = np.lexsort((np.where(sel, -scores, np.float32(0)), row))
    return RowBlock(block.profile, block.source, block.evidence, block.key, block.offsets,
                    block.positions[order], scores[order])


def _learned_order(scorer: RowScorer, profiles: list[ProfileContext], logit: np.ndarray, pair_prof: np.ndarray,
                   pair_ids: np.ndarray) -> None:
    """``RowScorer._rescore``'s learning-to-rank override, in place on ``logit`` (one profile's
    pairs at a time: the list's mean and spread are per profile)."""
    assert scorer.ltr is not None
    todo, starts = np.unique(pair_prof, return_index=True)
    bounds = np.append(starts, len(pair_prof))
    for i, a, b in zip(todo, bounds[:-1], bounds[1:]):
        listed = scorer.ltr.get(int(profiles[i].profile_id))
        if listed is None or not len(listed[0]):
            continue
        logit[a:b] = scorer.learned_logits(listed, pair_ids[a:b], logit[a:b])
