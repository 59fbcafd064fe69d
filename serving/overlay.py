"""Page transformations applied at request time, each a plain function of (page, inputs) -> page.

- ``enforce_page``: the hard rules (``ranking.rules.allowed_mask``) on every title, no duplicate
  within a row, no title repeated across the first ``dedupe_top_rows`` rows, empty rows dropped,
  at most ``row_count`` rows. Every page served passes through it (personalized and fallback).
- ``overlay_playback``: the real-time playback state on top of a snapshot page: a fresh
  "Continue watching" row first (most recently watched first), finished titles removed from
  every row; then ``enforce_page``.
- ``apply_artwork``: one artwork variant per title from an ``ArtworkPolicy``, with its propensity;
  a policy that fails (or returns malformed arrays) gives every title its default artwork.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from features.history import PlaybackState
from pathways.catalog import Catalog
from pathways.types import Page, Row, TitleCard
from ranking.rules import allowed_mask

log = logging.getLogger(__name__)

CONTINUE_WATCHING = "continue_watching"


class ArtworkPolicy(Protocol):
    """``bandits.serving.ArtworkSelector`` / ``DefaultArtwork``: arms (n,) and propensities (n,)."""

    version: str

    def select_page(
        self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str
    ) -> tuple[np.ndarray, np.ndarray]: ...


def enforce_page(
    page: Page,
    catalog: Catalog,
    region: str,
    max_maturity_level: int,
    finished: frozenset[int] = frozenset(),
    *,
    dedupe_top_rows: int = 10,
    row_count: int = 40,
) -> Page:
    """``page`` keeping only titles allowed for (region, maturity, finished); see module doc."""
    rows: list[Row] = []
    seen_top: set[int] = set()
    for row in page.rows:
        if len(rows) >= row_count:
            break
        ids = np.fromiter((c.title_id for c in row.titles), dtype=np.int64, count=len(row.titles))
        keep = allowed_mask(catalog, ids, region, max_maturity_level, finished) if len(ids) else np.zeros(0, bool)
        in_top = len(rows) < dedupe_top_rows
        kept: list[TitleCard] = []
        in_row: set[int] = set()
        for card, ok in zip(row.titles, keep.tolist()):
            tid = card.title_id
            if ok and tid not in in_row and not (in_top and tid in seen_top):
                in_row.add(tid)
                kept.append(card)
        if not kept:
            continue
        if in_top:
            seen_top |= in_row
        rows.append(row if len(kept) == len(row.titles) else replace(row, titles=tuple(kept)))
    return replace(page, rows=tuple(rows))


def continue_watching_row(
    state: PlaybackState, previous: Row | None, catalog: Catalog, row_length: int = 40
) -> Row | None:
    """The "Continue watching" row: titles in progress, most recent first, then those of the
    snapshot's row (``previous``) the real-time state does not know, minus finished titles.
    Rules are applied later by ``enforce_page``; unknown titles are skipped here."""
    recent = sorted(state.in_progress.items(), key=lambda kv: (-kv[1][1], kv[0]))
    cards: list[TitleCard] = []
    seen: set[int] = set()
    for tid, (fraction, _) in recent:
        pos = catalog.index.get(int(tid))
        if pos is None or tid in state.finished:
            continue
        cards.append(TitleCard(int(tid), catalog.names[pos], int(catalog.maturity[pos]), score=float(fraction)))
        seen.add(int(tid))
    if previous is not None:
        cards.extend(c for c in previous.titles if c.title_id not in seen and c.title_id not in state.finished)
    if not cards:
        return None
    return Row(
        row_id=CONTINUE_WATCHING,
        title="Continue watching",
        source=CONTINUE_WATCHING,
        evidence="Pick up where you left off",
        titles=tuple(cards[:row_length]),
    )


def overlay_playback(
    page: Page,
    state: PlaybackState,
    catalog: Catalog,
    region: str,
    max_maturity_level: int,
    *,
    row_length: int = 40,
    dedupe_top_rows: int = 10,
    row_count: int = 40,
) -> Page:
    """``page`` with the real-time state applied: continue watching first, finished removed."""
    previous = next((r for r in page.rows if r.source == CONTINUE_WATCHING), None)
    others = tuple(r for r in page.rows if r.source != CONTINUE_WATCHING)
    cw = continue_watching_row(state, previous, catalog, row_length)
    rows = (cw, *others) if cw is not None else others
    return enforce_page(
        replace(page, rows=rows), catalog, region, max_maturity_level, state.finished,
        dedupe_top_rows=dedupe_top_rows, row_count=row_count,
    )


@dataclass(frozen=True)
class ArtworkOutcome:
    """Which policy chose the artwork, and why it fell back to the defaults (None if it did not)."""

    policy_version: str
    fallback_reason: str | None = None


def apply_artwork(
    page: Page, catalog: Catalog | None, policy: ArtworkPolicy | None, profile_id: int | None, request_id: str
) -> tuple[Page, ArtworkOutcome]:
    """Set ``artwork_id``/``artwork_propensity`` of every card from ``policy`` (arm -> the
    title's ``artwork_ids[arm]``). Titles the catalog does not know keep variant 0, propensity 1."""
    cards = [c for r in page.rows for c in r.titles]
    if not cards or catalog is None:
        return page, ArtworkOutcome("default", None if catalog is not None else "no catalog")
    ids = np.fromiter((c.title_id for c in cards), dtype=np.int64, count=len(cards))
    positions = np.fromiter((i for r in page.rows for i in range(len(r.titles))), dtype=np.int64, count=len(cards))
    outcome = ArtworkOutcome(getattr(policy, "version", "default"))
    arms, props = np.zeros(len(ids), np.int64), np.ones(len(ids))
    if policy is None:
        outcome = ArtworkOutcome("default", "no policy loaded")
    else:
        try:
            got_arms, got_props = policy.select_page(-1 if profile_id is None else profile_id, ids, positions, request_id)
            got_arms, got_props = np.asarray(got_arms, np.int64), np.asarray(got_props, np.float64)
            if got_arms.shape != ids.shape or got_props.shape != ids.shape:
                raise ValueError(f"policy returned shapes {got_arms.shape}, {got_props.shape} for {ids.shape} titles")
            arms, props = got_arms, got_props
        except Exception as exc:  # noqa: BLE001 - a failing policy must never break the page
            log.warning("artwork policy %s failed: %s", outcome.policy_version, exc)
            outcome = ArtworkOutcome("default", f"policy failed: {type(exc).__name__}")
    pos = catalog.positions(ids)
    out: list[TitleCard] = []
    for card, p, arm, prop in zip(cards, pos.tolist(), arms.tolist(), props.tolist()):
        variants = catalog.artwork_ids[p] if p >= 0 else ()
        if 0 <= arm < len(variants) and 0.0 < prop <= 1.0:
            out.append(replace(card, artwork_id=int(variants[arm]), artwork_propensity=float(prop)))
        else:
            out.append(replace(card, artwork_id=int(variants[0]) if variants else 0, artwork_propensity=1.0))
    it = iter(out)
    rows = tuple(replace(r, titles=tuple(next(it) for _ in r.titles)) for r in page.rows)
    return replace(page, rows=rows), outcome
