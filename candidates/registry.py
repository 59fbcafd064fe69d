"""Build every candidate source once per nightly run; generate all rows for a profile in one call.

    sources = build_sources(als, catalog, config.candidates, as_of, events, profiles)
    rows = generate_all(sources, profile)            # personalized page
    rows = cohort_rows(sources, cohort_profile)      # fallback page for (region, maturity)

Sources are pluggable: anything with ``name``, ``serves_cohorts`` and ``generate(profile)``
(``candidates.base.CandidateSource``) can be appended to the list, e.g. a two-tower source.
A source with ``serves_profiles = False`` only feeds fallback pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np
import pyarrow as pa

from candidates.als import AlsSource
from candidates.base import CandidateSource, generate_batch
from candidates.because_you_watched import BecauseYouWatchedSource
from candidates.block import ProfileBlock, RowBlock, finalize_long
from candidates.continue_watching import ContinueWatchingSource
from candidates.genres import GenreSource
from candidates.new_releases import NewReleasesSource
from candidates.trending import PopularSource, TrendingSource, title_popularity, trending_by_region
from pathways.artifacts.factors import FactorArtifacts
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext

DEFAULT_TRENDING_HALF_LIFE_DAYS = 3.0  # FeatureConfig.trending_half_life_days' default


def build_sources(
    als: FactorArtifacts | None,
    catalog: Catalog,
    config: CandidateConfig,
    as_of: datetime,
    events: pa.Table,
    profiles: pa.Table,
    *,
    trending_half_life_days: float = DEFAULT_TRENDING_HALF_LIFE_DAYS,
    extra: Sequence[CandidateSource] = (),
) -> list[CandidateSource]:
    """Every source, computed from the events up to ``as_of`` (ALS sources only when ``als`` is given).

    ``events``: EVENT_SCHEMA table; ``profiles``: PROFILE_SCHEMA table (for each profile's region).
    """
    trending = trending_by_region(events, profiles, as_of, trending_half_life_days)
    popularity = title_popularity(events, catalog, as_of)
    sources: list[CandidateSource] = [ContinueWatchingSource(catalog, config)]
    if als is not None:
        sources += [AlsSource(als, catalog, config), BecauseYouWatchedSource(als, catalog, config)]
    sources += [
        TrendingSource(trending, catalog, config),
        GenreSource(catalog, popularity, config),
        NewReleasesSource(catalog, popularity, config, as_of),
        PopularSource(trending, popularity, catalog, config),
    ]
    sources += list(extra)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate source names must be unique, got {names}")
    return sources


def _for_profiles(sources: Sequence[CandidateSource]) -> list[CandidateSource]:
    return [s for s in sources if getattr(s, "serves_profiles", True)]


def generate_all(sources: Sequence[CandidateSource], profile: ProfileContext) -> list[Candidates]:
    """Every row of every profile-serving source for ``profile``, in source order."""
    return [row for source in _for_profiles(sources) for row in source.generate(profile)]


def generate_all_batch(sources: Sequence[CandidateSource], profiles: list[ProfileContext]) -> list[list[Candidates]]:
    """``generate_all`` for many profiles, using each source's batch path where it has one."""
    out: list[list[Candidates]] = [[] for _ in profiles]
    for source in _for_profiles(sources):
        for i, rows in enumerate(generate_batch(source, profiles)):
            out[i].extend(rows)
    return out


def generate_all_block(sources: Sequence[CandidateSource], block: ProfileBlock) -> RowBlock:
    """``generate_all`` for every profile of ``block`` in long form (rows by profile, then source
    order), using each source's ``generate_block`` (a loop over ``generate`` for sources without one)."""
    parts = []
    for source in _for_profiles(sources):
        make = getattr(source, "generate_block", None)
        parts.append(make(block) if make is not None else _loop_block(source, block))
    return RowBlock.concat(parts)


def _loop_block(source: CandidateSource, block: ProfileBlock) -> RowBlock:
    """A source's ``generate`` rows for each profile, as a ``RowBlock`` (their order is final)."""
    rows = [(i, r) for i, p in enumerate(block.profiles) for r in source.generate(p) if len(r)]
    if not rows:
        return RowBlock.empty()
    everything = np.ones((len(block.profiles), len(block.catalog)), dtype=bool)  # already through the rules
    prof = np.fromiter((i for i, _ in rows), np.int64, len(rows))
    out = finalize_long(block, prof, [block.catalog.positions(r.title_ids) for _, r in rows], [r.scores for _, r in rows],
                        everything, max(len(r) for _, r in rows), source.name, [r.evidence for _, r in rows],
                        [r.key for _, r in rows])
    return RowBlock(out.profile, tuple(r.source for _, r in rows), out.evidence, out.key, out.offsets, out.positions, out.scores)


def cohort_rows(sources: Sequence[CandidateSource], profile: ProfileContext) -> list[Candidates]:
    """Non-personalized rows for ``profile``'s (region, maturity) cohort: its history is ignored."""
    anonymous = replace(profile, history=(), finished=frozenset(), in_progress={}, in_progress_ts={}, known=False)
    return [row for source in sources if source.serves_cohorts for row in source.generate(anonymous)]
