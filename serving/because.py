"""The "Because you watched" row of a title just played: streamed plays meet the snapshot's similar titles.

The nightly pages hold "Because you watched" rows for the titles in the lake; a play posted
through the API since then reaches serving through the real-time consumer group, which keeps the
last titles each profile played (``features.stream.realtime.RecentPlays``). Serving has no item
factors, so the snapshot carries a per-title similar-titles table (``pathways.snapshot.SIMILAR``,
written by ``pipelines/similar.py``), loaded here as ``SimilarTitles``: sorted anchor ids,
offsets and the flat similar ids and cosines (O(titles x k) memory, whatever the profiles).

``because_overlay`` is the request-time step: for the profile's most recent streamed play that it
may see (maturity, licence) and that has similar titles left (the anchor), a row
``because_you_watched:<anchor>`` titled "Because you watched <name>" of the anchor's similar
titles, less the anchor, the titles the profile finished and those the hard rules forbid it
(maturity, licence in its region: ``ranking.rules``), at most ``row_length``. It goes right after "Continue watching" (first when the page has none) and
replaces the snapshot's row for the same anchor; the page then goes through the overlay and
``enforce_rows`` like any other. No recent play, no table, or nothing left: the page is unchanged.
Cost: numpy over the anchor's k titles and the page's flat arrays; no loop over titles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from features.history import PlaybackState
from pathways.catalog import Catalog
from pathways.snapshot import SIMILAR, SIMILAR_SCHEMA
from pathways.types import CompactRows, ProfileContext, RowHeader
from ranking.rules import allowed_mask
from serving.overlay import CONTINUE_WATCHING

if TYPE_CHECKING:
    from serving.snapshots import LoadedSnapshot

log = logging.getLogger(__name__)

BECAUSE_YOU_WATCHED = "because_you_watched"
RecentPlaysFn = Callable[[int], Sequence[int]]  # profile id -> titles played, most recent first


@dataclass(frozen=True)
class SimilarTitles:
    """Per anchor title, its similar titles best first: anchor ``anchors[i]`` (sorted, int64 (n,))
    holds ``ids[offsets[i]:offsets[i + 1]]`` (int64) with cosines ``scores[...]`` (float32)."""

    anchors: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    scores: np.ndarray

    def get(self, title_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(similar ids, cosines) of ``title_id``, or None when the table has no entry for it."""
        at = int(np.searchsorted(self.anchors, title_id))
        if at >= len(self.anchors) or self.anchors[at] != title_id:
            return None
        a, b = int(self.offsets[at]), int(self.offsets[at + 1])
        return self.ids[a:b], self.scores[a:b]


def load_similar(snapshot_dir: Path) -> SimilarTitles | None:
    """The snapshot's similar-titles table; None when it has none (older snapshots) or it is unreadable."""
    path = Path(snapshot_dir) / SIMILAR
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path, schema=SIMILAR_SCHEMA).sort_by("title_id")
        similar = table.column("similar_ids").combine_chunks()
        scores = table.column("scores").combine_chunks()
        return SimilarTitles(
            anchors=table.column("title_id").to_numpy().astype(np.int64),
            offsets=similar.offsets.to_numpy().astype(np.int64) - int(similar.offsets[0].as_py()),
            ids=similar.flatten().to_numpy().astype(np.int64),
            scores=scores.flatten().to_numpy(zero_copy_only=False).astype(np.float32),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:  # ArrowInvalid is a ValueError
        log.warning("similar-titles table of %s unreadable, no streamed 'Because you watched' row: %r", snapshot_dir, exc)
        return None


def because_row(
    similar: SimilarTitles, plays: Sequence[int], catalog: Catalog, profile: ProfileContext,
    finished: frozenset[int], row_length: int,
) -> tuple[RowHeader, np.ndarray, np.ndarray] | None:
    """The row for the most recent of ``plays`` (most recent first) that the rules allow the profile
    and that has similar titles left: its header, title ids and cosines, the rules applied; None when
    no play qualifies (an anchor the profile may not see is not named either)."""
    licensed = catalog.licensed_mask(profile.region)
    for anchor in map(int, plays):  # a handful (stream.recent_plays)
        at = catalog.index.get(anchor)
        entry = similar.get(anchor)
        if at is None or entry is None or catalog.maturity[at] > profile.max_maturity_level or not licensed[at]:
            continue
        ids, scores = entry
        keep = (ids != anchor) & allowed_mask(catalog, ids, profile.region, profile.max_maturity_level, finished)
        if not keep.any():
            continue
        name = catalog.name(anchor)
        header = RowHeader(f"{BECAUSE_YOU_WATCHED}:{anchor}", f"Because you watched {name}", BECAUSE_YOU_WATCHED,
                           f"Because you watched {name} (just now)")
        return header, ids[keep][:row_length], scores[keep][:row_length].astype(np.float64)
    return None


def insert_row(rows: CompactRows, header: RowHeader, ids: np.ndarray, scores: np.ndarray) -> CompactRows:
    """``rows`` with ``header``'s row right after "Continue watching" (first when there is none),
    any row with the same ``row_id`` removed."""
    keep_row = np.array([h.row_id != header.row_id for h in rows.headers], dtype=bool)
    lengths = np.diff(rows.offsets)
    keep_title = np.repeat(keep_row, lengths)
    headers = [h for h, k in zip(rows.headers, keep_row) if k]
    lengths = lengths[keep_row]
    at = 1 if headers and headers[0].source == CONTINUE_WATCHING else 0
    cut = int(lengths[:at].sum())
    flat_ids, flat_scores = rows.title_ids[keep_title], rows.scores[keep_title]
    new_lengths = np.concatenate([lengths[:at], [len(ids)], lengths[at:]]).astype(np.int64)
    return CompactRows(
        (*headers[:at], header, *headers[at:]),
        np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64),
        np.concatenate([flat_ids[:cut], ids.astype(np.int64), flat_ids[cut:]]),
        np.concatenate([flat_scores[:cut], np.round(scores.astype(np.float64), 6), flat_scores[cut:]]),
    )


def because_overlay(
    rows: CompactRows, snapshot: LoadedSnapshot, profile: ProfileContext, recent_plays: RecentPlaysFn | None,
    state: PlaybackState | None, row_length: int,
) -> CompactRows:
    """``rows`` (the profile's stored page in ``snapshot``) with the streamed "Because you watched"
    row placed (see the module docstring); ``state``: the real-time playback state, if read."""
    if snapshot.similar is None or recent_plays is None:
        return rows
    plays = recent_plays(profile.profile_id)
    if not plays:
        return rows
    finished = state.finished if state is not None else profile.finished
    row = because_row(snapshot.similar, plays, snapshot.catalog, profile, frozenset(finished), row_length)
    return rows if row is None else insert_row(rows, *row)
