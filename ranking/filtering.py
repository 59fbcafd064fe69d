"""The hard rules plus de-duplication over a page's rows: one filter for the assembler and serving.

A ``RowFilter`` is made for one profile (region, maturity ceiling, finished titles: the rules of
``ranking.rules``) and follows the rows of one page in the order they are placed:

1. ``admit``: per row, the titles that break no hard rule, each title once (first occurrence kept);
2. ``unseen``: which of them were not already placed in the first ``dedupe_top_rows`` rows;
3. ``place``: a row goes on the page (its titles count as seen while it is one of the top rows).

``filter_rows`` runs the three over rows in page order: the serving overlay and every rung of the
fallback ladder. The page assembler (``ranking.page``) calls them one by one, because it picks the
next row by what each candidate row would still show once the rows before it are placed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pathways.catalog import Catalog
from pathways.types import ProfileContext
from ranking.rules import allowed_mask


class RowFilter:
    """The hard rules and the de-duplication for the rows of one page of ``profile``."""

    def __init__(self, catalog: Catalog, profile: ProfileContext, dedupe_top_rows: int) -> None:
        if dedupe_top_rows < 0:
            raise ValueError(f"dedupe_top_rows must be >= 0, got {dedupe_top_rows}")
        self.catalog = catalog
        self.profile = profile
        self.dedupe_top_rows = dedupe_top_rows
        self.placed = 0  # rows placed so far
        self._seen = np.zeros(0, np.int64)  # titles placed in the first ``dedupe_top_rows`` rows
        self._seen_at: np.ndarray | None = None  # the same as a bool mask over catalog positions

    def admit(self, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        """For each row (title ids, int64 (n_r,)), the sorted positions (int64) of the titles that
        break no hard rule, keeping the first occurrence of each; one rules check for all rows."""
        rows = [np.asarray(r, dtype=np.int64) for r in rows]
        if not rows:
            return []
        p = self.profile
        ok = allowed_mask(self.catalog, np.concatenate(rows), p.region, p.max_maturity_level, p.finished)
        out, start = [], 0
        for ids in rows:
            keep = np.flatnonzero(ok[start : start + len(ids)])
            start += len(ids)
            _, first = np.unique(ids[keep], return_index=True)
            if len(first) != len(keep):
                keep = keep[np.sort(first)]
            out.append(keep)
        return out

    def unseen(self, title_ids: np.ndarray) -> np.ndarray:
        """Bool mask (n,): the titles the next row placed may show (not in an earlier top row)."""
        ids = np.asarray(title_ids, dtype=np.int64)
        if self.placed >= self.dedupe_top_rows or len(self._seen) == 0:
            return np.ones(len(ids), dtype=bool)
        return ~np.isin(ids, self._seen)

    def unseen_at(self, positions: np.ndarray) -> np.ndarray:
        """``unseen`` for titles given by catalog positions (int64 (n,), all >= 0): a mask lookup
        instead of a set search, for callers that ask about the same rows again and again."""
        if self.placed >= self.dedupe_top_rows or self._seen_at is None:
            return np.ones(len(positions), dtype=bool)
        return ~self._seen_at[positions]

    def place(self, title_ids: np.ndarray) -> None:
        """Record that a row showing ``title_ids`` (after ``admit`` and ``unseen``) is on the page."""
        if self.placed < self.dedupe_top_rows:
            ids = np.asarray(title_ids, dtype=np.int64)
            self._seen = np.concatenate([self._seen, ids])
            if self._seen_at is None:
                self._seen_at = np.zeros(len(self.catalog), dtype=bool)
            pos = self.catalog.positions(ids)
            self._seen_at[pos[pos >= 0]] = True
        self.placed += 1

    def filter_rows(self, rows: Sequence[np.ndarray], row_count: int) -> list[tuple[int, np.ndarray]]:
        """Rows in page order -> ``(row index, positions kept)`` for each row left with a title,
        at most ``row_count`` of them; the kept titles are ``rows[r][positions]``."""
        out: list[tuple[int, np.ndarray]] = []
        for r, keep in enumerate(self.admit(rows)):
            if len(out) >= row_count:
                break
            ids = np.asarray(rows[r], dtype=np.int64)
            keep = keep[self.unseen(ids[keep])]
            if len(keep):
                self.place(ids[keep])
                out.append((r, keep))
        return out
