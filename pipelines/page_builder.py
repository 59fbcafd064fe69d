"""Building pages for many profiles, on this machine or across a Ray cluster.

A ``PageBuilder`` is opened from a small, picklable ``PageBuildSpec`` (paths and the config):
it loads the catalog, the events, the ALS artifacts, the rankers of both A/B cells and the
feature store once, then turns chunks of ``ProfileContext`` into pages. The local executor runs
one builder in-process; the Ray executor runs one builder per worker as a Ray actor and farms
the chunks out with an ``ActorPool`` — the same code either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from features.schema import MATURITY_LEVELS, REGIONS
from pathways.catalog import Catalog
from pathways.config import PathwaysConfig
from pathways.types import Page, ProfileContext
from ranking.page import assemble_page

TOP_ROW_SOURCE = "top_picks"
CELL_ALIASES = (("control", "champion"), ("challenger", "challenger"))


@dataclass(frozen=True)
class PageBuildSpec:
    """Everything a builder needs, as paths: cheap to ship to a Ray worker."""

    config: PathwaysConfig
    als_dir: Path
    as_of: datetime
    factor_sources: dict[str, tuple[Path, str]] = field(default_factory=dict)  # name -> (artifacts, evidence)
    top_row: Path | None = None  # the learning-to-rank top row, one ranked list per profile


class PageBuilder:
    """Candidates -> ranker of the profile's cell -> page assembler, for chunks of profiles."""

    def __init__(self, spec: PageBuildSpec, catalog: Catalog, sources: list, scorers: dict) -> None:
        self.spec = spec
        self.catalog = catalog
        self.sources = sources
        self.scorers = scorers

    @classmethod
    def open(cls, spec: PageBuildSpec) -> "PageBuilder":
        from candidates.als import FactorSource
        from candidates.registry import build_sources
        from features.ingest import read_events
        from features.store import FeatureStoreManager
        from ranking.features import RowScorer
        from ranking.model import load_registered
        from training import tracking
        from training.als import AlsArtifacts

        cfg = spec.config
        world = cfg.raw_dir / "world"
        catalog = Catalog.from_table(pq.read_table(world / "titles.parquet"))
        profiles = pq.read_table(world / "profiles.parquet")
        events = read_events(cfg.lake_dir)
        als = AlsArtifacts.load(spec.als_dir)
        extra = [
            FactorSource(AlsArtifacts.load(path), catalog, cfg.candidates, name=name, evidence=evidence)
            for name, (path, evidence) in spec.factor_sources.items()
        ]
        top_lists = None
        if spec.top_row is not None:
            from candidates.precomputed import PrecomputedSource, read_lists

            top_lists = read_lists(spec.top_row)
            extra.append(PrecomputedSource(top_lists, catalog, cfg.candidates, TOP_ROW_SOURCE, "Your top picks"))
        sources = build_sources(als, catalog, cfg.candidates, spec.as_of, events, profiles,
                                trending_half_life_days=cfg.features.trending_half_life_days, extra=extra)
        tracking.configure(cfg.mlflow_uri, cfg.training.experiment_name)
        store = FeatureStoreManager(cfg.features, cfg.feature_repo_dir)
        at_days = spec.as_of.timestamp() / 86_400
        # Control (the champion) orders rows by the learning-to-rank model where it has a list;
        # the challenger cell keeps the impression-trained ranker behind ranker@challenger.
        scorers = {
            cell: RowScorer(load_registered(tracking.alias_uri("ranker", alias)), store, catalog, at_days,
                            ltr=top_lists if cell == "control" else None)
            for cell, alias in CELL_ALIASES
        }
        return cls(spec, catalog, sources, scorers)

    def build(self, profiles: list[ProfileContext]) -> list[tuple[int, str, str, int]]:
        """(profile_id, cell, page JSON, number of rows) for each profile of the chunk."""
        from candidates.registry import generate_all

        for scorer in self.scorers.values():
            scorer.prefetch([p.profile_id for p in profiles])
        out = []
        for profile in profiles:
            rows = generate_all(self.sources, profile)
            scorer = self.scorers.get(profile.cell, self.scorers["control"])
            page = assemble_page(scorer.score_rows(profile, rows), profile, self.catalog, self.spec.config.page)
            out.append((profile.profile_id, profile.cell, json.dumps(page.to_dict()), len(page.rows)))
        return out

    def fallbacks(self) -> dict[tuple[str, int], Page]:
        """One non-personalized page per (region, maturity level), from cohort sources only."""
        from candidates.registry import cohort_rows

        out = {}
        for region in REGIONS:
            for level in MATURITY_LEVELS:
                cohort = ProfileContext(profile_id=-1, region=region, max_maturity_level=level, known=False,
                                        cell="fallback")
                out[(region, level)] = assemble_page(
                    cohort_rows(self.sources, cohort), cohort, self.catalog, self.spec.config.page,
                    personalized=False, reason="non-personalized fallback", fallback_rung="cohort",
                )
        return out


def build_pages(
    spec: PageBuildSpec, profiles: list[ProfileContext], progress: bool = True
) -> tuple[list[tuple[int, str, str, int]], dict[tuple[str, int], Page]]:
    """Pages for every profile and the fallback pages, with the configured executor."""
    pcfg = spec.config.pipeline
    chunks = [profiles[i : i + pcfg.chunk_size] for i in range(0, len(profiles), pcfg.chunk_size)]
    bar = tqdm(total=len(profiles), desc="pages", unit="profile", disable=not progress)
    records: list[tuple[int, str, str, int]] = []
    if pcfg.executor == "local":
        builder = PageBuilder.open(spec)
        for chunk in chunks:
            records.extend(builder.build(chunk))
            bar.update(len(chunk))
        fallbacks = builder.fallbacks()
    else:
        records, fallbacks = _build_on_ray(spec, chunks, bar)
    bar.close()
    records.sort(key=lambda r: r[0])  # deterministic output whatever the order chunks finished in
    return records, fallbacks


def _build_on_ray(spec: PageBuildSpec, chunks: list, bar: Any) -> tuple[list, dict]:
    import ray
    from ray.util import ActorPool

    pcfg = spec.config.pipeline
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=pcfg.ray_address, num_cpus=None if pcfg.ray_address else pcfg.workers,
                 include_dashboard=False, log_to_driver=False)
    try:
        actor_cls = ray.remote(num_cpus=1)(_RayPageBuilder)
        actors = [actor_cls.remote(spec) for _ in range(pcfg.workers)]
        pool = ActorPool(actors)
        records: list = []
        for part in pool.map_unordered(lambda a, chunk: a.build.remote(chunk), chunks):
            records.extend(part)
            bar.update(len(part))
        fallbacks = ray.get(actors[0].fallbacks.remote())
        return records, fallbacks
    finally:
        if started_here:
            ray.shutdown()


class _RayPageBuilder:
    """The Ray actor: a PageBuilder opened once per worker process."""

    def __init__(self, spec: PageBuildSpec) -> None:
        self.builder = PageBuilder.open(spec)

    def build(self, profiles: list[ProfileContext]) -> list[tuple[int, str, str, int]]:
        return self.builder.build(profiles)

    def fallbacks(self) -> dict[tuple[str, int], Page]:
        return self.builder.fallbacks()
