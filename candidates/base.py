"""The one interface every candidate generator speaks, and the helpers they share.

A source maps a ``ProfileContext`` to one or more ``Candidates`` rows (one per anchor title,
genre, ...). Every row a source returns has already been through the hard rules
(``ranking.rules.enforce``), is sorted by score (descending), holds no title twice and at most
``CandidateConfig.per_source`` titles. ``finalize`` does all of that in one place.

Sources that can answer much faster for many profiles at once (a faiss search over a batch of
queries) also implement ``generate_batch``; ``generate_batch`` falls back to a loop otherwise.
Sources flagged ``serves_cohorts`` do not need a viewing history: ``registry.cohort_rows`` calls
them with a history-free profile to fill the non-personalized fallback pages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from pathways.catalog import Catalog
from pathways.types import Candidates, ProfileContext
from ranking.rules import enforce


@runtime_checkable
class CandidateSource(Protocol):
    """``generate(profile)`` -> rows of scored titles, each already through the hard rules."""

    name: str
    serves_cohorts: bool  # True: useful for a profile with no history (fallback pages)

    def generate(self, profile: ProfileContext) -> list[Candidates]: ...


def holds(source: CandidateSource, profile_ids: np.ndarray) -> np.ndarray:
    """Which of ``profile_ids`` ``source`` keeps data of its own for, beyond what their
    ``ProfileContext`` says (vectors, precomputed lists): ``source.holds(profile_ids)`` where it has
    one, none when it reads only the context (``reads_context_only``), else every profile (a source
    that does not say is never taken to treat two profiles of one context alike)."""
    own = getattr(source, "holds", None)
    if own is not None:
        return np.asarray(own(profile_ids), bool)
    return np.full(len(profile_ids), not getattr(source, "reads_context_only", False))


def generate_batch(source: CandidateSource, profiles: list[ProfileContext]) -> list[list[Candidates]]:
    """``source.generate_batch(profiles)`` where the source has one, else a loop over ``generate``."""
    batch = getattr(source, "generate_batch", None)
    if batch is not None:
        return batch(profiles)
    return [source.generate(p) for p in profiles]


def finalize(
    candidates: Candidates,
    catalog: Catalog,
    profile: ProfileContext,
    k: int,
    exclude: Iterable[int] = (),
) -> Candidates:
    """Hard rules, then drop ``exclude`` and duplicate ids, sort by score desc, keep the top ``k``.

    Duplicates keep their highest score. Ties keep the incoming order (stable sort).
    """
    rows = enforce(candidates, catalog, profile)
    excluded = np.fromiter((int(t) for t in exclude), dtype=np.int64)
    if len(rows) and excluded.size:
        rows = rows.mask(~np.isin(rows.title_ids, excluded))
    return _best_unique(rows, k)


def _best_unique(rows: Candidates, k: int) -> Candidates:
    """Sorted by score desc (stable), each title once (its highest score), the top ``k``."""
    rows = rows.sorted()
    if len(rows):
        _, first = np.unique(rows.title_ids, return_index=True)
        if first.size != len(rows):
            keep = np.zeros(len(rows), dtype=bool)
            keep[first] = True  # first occurrence after sorting = the highest score
            rows = rows.mask(keep)
    return rows.top(k)


def finalize_at(
    candidates: Candidates, positions: np.ndarray, allowed: np.ndarray, k: int, *, sorted_unique: bool = False
) -> Candidates:
    """``finalize`` with the rules and exclusions already folded into ``allowed`` (bool over catalog
    positions, ``profile_allowed``): the same rows, with one mask lookup per title.

    ``positions`` (len(candidates),): each candidate's catalog position (-1 = unknown: dropped).
    ``sorted_unique``: the candidates are already sorted by score desc without repeats, so only the
    first ``k`` allowed ones are kept before sorting (the same result, less work).
    """
    keep = (positions >= 0) & allowed[np.maximum(positions, 0)]
    if sorted_unique:
        keep &= np.cumsum(keep) <= k
    return _best_unique(candidates.mask(keep), k)


class CohortRules:
    """The maturity and licence rules per (region, max maturity), memoized as masks over catalog
    positions: a cheap vectorized pre-cut before ``finalize`` (which still applies every rule).
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._masks: dict[tuple[str, int], np.ndarray] = {}

    def mask(self, region: str, max_maturity_level: int) -> np.ndarray:
        """Bool (n_titles,): titles this cohort may see."""
        key = (region, int(max_maturity_level))
        if key not in self._masks:
            self._masks[key] = (self.catalog.maturity <= max_maturity_level) & self.catalog.licensed_mask(region)
        return self._masks[key]

    def blocked(self, region: str, max_maturity_level: int) -> int:
        """How many catalog titles the rules block for this cohort (the faiss over-fetch)."""
        return int(len(self.catalog) - self.mask(region, max_maturity_level).sum())

    def precut(self, candidates: Candidates, positions: np.ndarray, profile: ProfileContext, n: int) -> Candidates:
        """The first ``n`` candidates (sorted desc) the profile's cohort may see.

        ``positions`` (len(candidates),): each candidate's catalog position (-1 = unknown).
        """
        ok = self.mask(profile.region, profile.max_maturity_level)
        keep = (positions >= 0) & ok[np.maximum(positions, 0)]
        keep &= np.cumsum(keep) <= n
        return candidates.mask(keep)


def profile_allowed(rules: CohortRules, profile: ProfileContext, exclude: Iterable[int] = ()) -> np.ndarray:
    """Bool (n_titles,) over catalog positions: the titles ``profile`` may be shown (maturity,
    licence, not finished: ``ranking.rules``) that are not in ``exclude``; for ``finalize_at``."""
    allowed = rules.mask(profile.region, profile.max_maturity_level).copy()
    dropped = np.fromiter({int(t) for t in profile.finished} | {int(t) for t in exclude}, dtype=np.int64)
    if dropped.size:
        pos = rules.catalog.positions(dropped)
        allowed[pos[pos >= 0]] = False
    return allowed


def seen_titles(profile: ProfileContext) -> frozenset[int]:
    """Titles the profile played or finished (personal sources do not recommend them again)."""
    return frozenset(int(t) for t in profile.history) | profile.finished


def rank_scores(n: int) -> np.ndarray:
    """Scores n, n-1, ..., 1 (float32, shape (n,)) for sources whose order is the score."""
    return np.arange(n, 0, -1, dtype=np.float32)
