"""Trending by region, popularity, and the cohort lists behind the fallback pages.

- ``trending_by_region(events, profiles, as_of, half_life_days)``: per region, every title's
  plays by profiles of that region, each weighted ``0.5 ** (age_days / half_life_days)`` at
  ``as_of`` (events after ``as_of`` ignored). Computed once per nightly run; the sources filter it.
- ``title_popularity(events, catalog, as_of)``: plays per catalog title (float32, (n_titles,)).
- ``cohort_popular(...)``: one list for a (region, max maturity) cohort: the region's trending
  titles first, then the rest by global popularity, so a region with few plays still gets a list.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from candidates.base import CohortRules, finalize
from candidates.block import ProfileBlock, RowBlock, first_allowed_lists, first_fetch, padded, pick, rows_of_lists
from features.schema import REGIONS, EventType
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext

SECONDS_PER_DAY = 86_400.0


def region_name(region: str) -> str:
    return REGIONS.get(region, region)


def _plays(events: pa.Table, as_of: datetime | None) -> pa.Table:
    """PLAY events with a title, at or before ``as_of`` (when given)."""
    mask = pc.and_(pc.equal(events.column("event_type"), EventType.PLAY.value), pc.is_valid(events.column("title_id")))
    if as_of is not None:
        if as_of.tzinfo is None:
            raise ValueError(f"as_of must be timezone-aware (UTC), got {as_of!r}")
        mask = pc.and_(mask, pc.less_equal(events.column("ts"), pa.scalar(as_of, events.schema.field("ts").type)))
    return events.filter(mask)


def trending_by_region(
    events: pa.Table, profiles: pa.Table, as_of: datetime, half_life_days: float
) -> dict[str, Candidates]:
    """Region -> all titles played there, by decayed play count (desc). Unfiltered by the rules."""
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    plays = _plays(events, as_of).select(["profile_id", "title_id", "ts"]).to_pandas()
    region_of = pd.Series(profiles.column("region").to_pylist(), index=profiles.column("profile_id").to_numpy())
    plays["region"] = plays["profile_id"].map(region_of)
    plays = plays.dropna(subset=["region"])  # plays by profiles we know nothing of have no region
    age_days = (pd.Timestamp(as_of) - plays["ts"]).dt.total_seconds().to_numpy() / SECONDS_PER_DAY
    plays["weight"] = 0.5 ** (age_days / half_life_days)
    out: dict[str, Candidates] = {}
    for region, group in plays.groupby("region", sort=True):
        scores = group.groupby("title_id")["weight"].sum()
        cands = Candidates(
            "trending",
            scores.index.to_numpy(np.int64),
            scores.to_numpy(np.float32),
            evidence=f"Trending in {region_name(str(region))}",
            key=str(region),
        )
        out[str(region)] = cands.sorted()
    return out


def title_popularity(events: pa.Table, catalog: Catalog, as_of: datetime | None = None) -> np.ndarray:
    """Plays per catalog title up to ``as_of``: float32 (n_titles,), aligned with ``catalog.title_ids``."""
    ids = _plays(events, as_of).column("title_id").to_numpy()
    pos = catalog.positions(ids)
    return np.bincount(pos[pos >= 0], minlength=len(catalog)).astype(np.float32)


class TrendingSource:
    """"Trending in <region>": the region's decayed play counts, filtered for the profile."""

    name = "trending"
    serves_cohorts = True
    reads_context_only = True  # nothing of its own per profile (candidates.base.holds)

    def __init__(self, trending: dict[str, Candidates], catalog: Catalog, config: CandidateConfig):
        self.trending = trending
        self.catalog = catalog
        self.config = config
        self.rules = CohortRules(catalog)
        self.positions = {r: catalog.positions(c.title_ids) for r, c in trending.items()}
        # For ``generate_block``: every region's list on a line of one table.
        self._regions = {r: j for j, r in enumerate(trending)}
        self._table = padded([self.positions[r] for r in trending])
        self._scores = padded([c.scores for c in trending.values()], fill=0)
        self._evidence = [c.evidence for c in trending.values()]
        self._keys = [c.key for c in trending.values()]

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        region = self.trending.get(profile.region)
        if region is None:
            return []
        n = self.config.per_source + len(profile.finished)
        region = self.rules.precut(region, self.positions[profile.region], profile, n)
        row = finalize(region, self.catalog, profile, self.config.per_source)
        return [row] if len(row) else []

    def generate_block(self, block: ProfileBlock) -> RowBlock:
        """``generate`` for a block: the first ``per_source`` allowed titles of every profile's region
        list at once (``first_allowed_lists``); a profile has at most one row, so they are in order."""
        which = np.fromiter((self._regions.get(p.region, -1) for p in block.profiles), np.int64, len(block.profiles))
        profs = np.flatnonzero(which >= 0)
        which = which[profs]
        k = self.config.per_source
        line, col = first_allowed_lists(block.rules_ok, profs, self._table, which, k, first_fetch(k, block.finished_count))
        at = which.tolist()
        return rows_of_lists(line, col, profs, self._table, which, self._scores, self.name, pick(self._evidence, at),
                               pick(self._keys, at))


def cohort_popular(
    trending: dict[str, Candidates],
    popularity: np.ndarray,
    catalog: Catalog,
    region: str,
    max_maturity_level: int,
    k: int,
) -> Candidates:
    """Non-personalized list for a (region, maturity) cohort, through the hard rules, at most ``k``.

    The region's trending titles come first (by trending score), then every other allowed title
    by global ``popularity`` ((n_titles,), aligned with the catalog), then by title id.
    """
    if popularity.shape != (len(catalog),):
        raise ValueError(f"popularity must have shape ({len(catalog)},), got {popularity.shape}")
    profile = ProfileContext(profile_id=-1, region=region, max_maturity_level=max_maturity_level, known=False)
    order = np.lexsort((catalog.title_ids, -popularity))  # popularity desc, then id
    trend = trending.get(region, Candidates.empty("trending"))
    rest = order[~np.isin(catalog.title_ids[order], trend.title_ids)]
    # Scores: trending titles above every backfilled one; backfill by rank.
    n_rest = len(rest)
    top = float(trend.scores.min()) if len(trend) else 0.0
    back_scores = np.linspace(top - 1.0, top - 1.0 - n_rest, n_rest, endpoint=False, dtype=np.float64) if n_rest else np.zeros(0)
    ids = np.concatenate([trend.title_ids, catalog.title_ids[rest]])
    scores = np.concatenate([trend.scores.astype(np.float64), back_scores])
    cands = Candidates("popular", ids, scores.astype(np.float32), evidence=f"Popular in {region_name(region)}", key=region)
    return finalize(cands, catalog, profile, k)


class PopularSource:
    """"Popular in <region>" for fallback pages only (``serves_profiles = False``)."""

    name = "popular"
    serves_cohorts = True
    reads_context_only = True  # nothing of its own per profile (candidates.base.holds)
    serves_profiles = False

    def __init__(self, trending: dict[str, Candidates], popularity: np.ndarray, catalog: Catalog, config: CandidateConfig):
        self.trending = trending
        self.popularity = popularity
        self.catalog = catalog
        self.config = config

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        row = cohort_popular(self.trending, self.popularity, self.catalog, profile.region,
                             profile.max_maturity_level, self.config.per_source)
        row = finalize(row, self.catalog, profile, self.config.per_source)  # the profile's finished titles
        return [row] if len(row) else []
