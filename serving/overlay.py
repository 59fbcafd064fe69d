"""Page transformations at request time, each a plain function over ``PageRows``.

- ``enforce_rows``: the hard rules (``ranking.rules.allowed_mask``) on every title, no duplicate
  within a row, no title repeated across the first ``dedupe_top_rows`` rows, empty rows dropped,
  at most ``row_count`` rows. Every page served passes through it (personalized and fallback).
- ``overlay_playback``: the real-time playback state over a snapshot page: a fresh "Continue
  watching" row first (most recently watched first, then the snapshot row's other titles),
  finished titles removed from every row; then ``enforce_rows``.
- ``select_artwork``: one artwork variant per title from an ``ArtworkPolicy``, with its
  propensity; a policy that fails (or returns malformed arrays) gives every title its default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from features.history import PlaybackState
from pathways.catalog import Catalog
from ranking.rules import allowed_mask
from serving.rows import PageRows, RowMeta, TitleRenderer

log = logging.getLogger(__name__)

CONTINUE_WATCHING = "continue_watching"
CONTINUE_META = RowMeta(CONTINUE_WATCHING, "Continue watching", CONTINUE_WATCHING, "Pick up where you left off")


class ArtworkPolicy(Protocol):
    """``bandits.serving.ArtworkSelector`` / ``DefaultArtwork``: arms (n,) and propensities (n,)."""

    version: str

    def select_page(
        self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str
    ) -> tuple[np.ndarray, np.ndarray]: ...


def enforce_rows(
    rows: PageRows,
    catalog: Catalog,
    region: str,
    max_maturity_level: int,
    finished: frozenset[int] = frozenset(),
    *,
    dedupe_top_rows: int = 10,
    row_count: int = 40,
) -> PageRows:
    """``rows`` keeping only titles allowed for (region, maturity, finished); see module doc."""
    keep = allowed_mask(catalog, rows.title_ids, region, max_maturity_level, finished)
    meta: list[RowMeta] = []
    ids_out: list[np.ndarray] = []
    scores_out: list[np.ndarray] = []
    seen_top: set[int] = set()
    for r, m in enumerate(rows.meta):
        if len(meta) >= row_count:
            break
        a, b = int(rows.offsets[r]), int(rows.offsets[r + 1])
        ok = keep[a:b]
        ids, scores = rows.title_ids[a:b][ok], rows.scores[a:b][ok]
        if len(meta) < dedupe_top_rows:
            chosen, in_row = [], set()
            for i, t in enumerate(ids.tolist()):
                if t not in in_row and t not in seen_top:
                    in_row.add(t)
                    chosen.append(i)
            seen_top |= in_row
            if len(chosen) != len(ids):
                ids, scores = ids[chosen], scores[chosen]
        else:
            _, first = np.unique(ids, return_index=True)
            if len(first) != len(ids):
                first.sort()
                ids, scores = ids[first], scores[first]
        if len(ids):
            meta.append(m)
            ids_out.append(ids)
            scores_out.append(scores)
    return PageRows.build(meta, ids_out, scores_out)


def continue_watching(state: PlaybackState, previous: tuple[np.ndarray, np.ndarray] | None, row_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and scores (the fraction watched) of the "Continue watching" row, before the rules."""
    recent = sorted(state.in_progress.items(), key=lambda kv: (-kv[1][1], kv[0]))
    ids = [int(t) for t, _ in recent if t not in state.finished]
    scores = [float(f) for t, (f, _) in recent if t not in state.finished]
    if previous is not None:
        have = set(ids)
        for t, s in zip(previous[0].tolist(), previous[1].tolist()):
            if t not in have and t not in state.finished:
                ids.append(t)
                scores.append(s)
    return np.array(ids[:row_length], dtype=np.int64), np.array(scores[:row_length], dtype=np.float64)


def overlay_playback(
    rows: PageRows,
    state: PlaybackState,
    catalog: Catalog,
    region: str,
    max_maturity_level: int,
    *,
    row_length: int = 40,
    dedupe_top_rows: int = 10,
    row_count: int = 40,
) -> PageRows:
    """``rows`` with the real-time state applied: continue watching first, finished removed."""
    cw_index = next((i for i, m in enumerate(rows.meta) if m.source == CONTINUE_WATCHING), None)
    cw_ids, cw_scores = continue_watching(state, rows.row(cw_index) if cw_index is not None else None, row_length)
    meta, ids, scores = [], [], []
    if len(cw_ids):
        meta.append(CONTINUE_META)
        ids.append(cw_ids)
        scores.append(cw_scores)
    for r, m in enumerate(rows.meta):
        if r != cw_index:
            meta.append(m)
            i, s = rows.row(r)
            ids.append(i)
            scores.append(s)
    return enforce_rows(
        PageRows.build(meta, ids, scores), catalog, region, max_maturity_level, state.finished,
        dedupe_top_rows=dedupe_top_rows, row_count=row_count,
    )


@dataclass(frozen=True)
class ArtworkChoice:
    """Artwork shown per title (variant ids, (n,)), its propensity (n,), the policy and why it fell back."""

    artwork_ids: np.ndarray
    propensities: np.ndarray
    policy_version: str
    fallback_reason: str | None = None


def select_artwork(
    rows: PageRows, renderer: TitleRenderer, policy: ArtworkPolicy | None, profile_id: int, request_id: str
) -> ArtworkChoice:
    """Arms from ``policy`` mapped to each title's ``artwork_ids[arm]``; variant 0 with propensity 1
    for every title when there is no policy or it fails, and for single titles it answers badly."""
    n = len(rows.title_ids)
    arms, props = np.zeros(n, np.int64), np.ones(n)
    version, reason = getattr(policy, "version", "default"), None
    if policy is None:
        version, reason = "default", "no policy loaded"
    elif n:
        try:
            got_arms, got_props = policy.select_page(profile_id, rows.title_ids, rows.positions(), request_id)
            got_arms, got_props = np.asarray(got_arms, np.int64), np.asarray(got_props, np.float64)
            if got_arms.shape != (n,) or got_props.shape != (n,):
                raise ValueError(f"policy returned shapes {got_arms.shape}, {got_props.shape} for {n} titles")
            arms, props = got_arms, got_props
        except Exception as exc:  # noqa: BLE001 - a failing policy must never break the page
            log.warning("artwork policy %s failed: %s", version, exc)
            version, reason = "default", f"policy failed: {type(exc).__name__}"
    pos = renderer.positions(rows.title_ids)
    safe = np.maximum(pos, 0)
    valid = (pos >= 0) & (arms >= 0) & (arms < renderer.n_variants[safe]) & (props > 0.0) & (props <= 1.0)
    arms = np.where(valid, arms, 0)
    art = renderer.artwork[safe, np.minimum(arms, renderer.artwork.shape[1] - 1)]
    art = np.where((pos >= 0) & (art >= 0), art, 0)
    return ArtworkChoice(art.astype(np.int64), np.where(valid, props, 1.0), version, reason)
