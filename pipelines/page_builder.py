"""Building pages for blocks of profiles, on this machine or across a Ray cluster, streamed to a sink.

A ``PageBuilder`` is opened from a small, picklable ``PageBuildSpec`` (paths and the config):
it loads the catalog, the play events the sources aggregate (trending, popularity: a Parquet
file the pages stage writes once, never the whole lake), the ALS and retrieval artifacts, the
rankers of both A/B cells and the feature store once, then turns blocks of ``ProfileContext``
into ``BuiltPage`` records: the page as the page store holds it (``pathways.pageblob``).

``build`` is the block path: each source's batch candidates (one faiss search per block), one
feature matrix per block and cell, the assembler's rows straight into ``CompactRows``;
``build_loop`` is the per-profile path through ``Page`` objects it replaced, kept as the parity
reference and the benchmark's baseline (both give the same bytes). The local executor runs one
builder in-process, ``pipeline.threads`` blocks at a time (``build_blocks``: the heavy steps release
the GIL); the Ray executor runs one builder per worker as a Ray actor with at most two blocks in
flight per actor — the same code either way. Each finished block goes to ``sink`` at
once, so no stage holds every profile's page in memory.

Cost of ``build`` (P profiles in a block, T catalog titles, R candidate rows of ~L titles per
profile): time grows linearly with the number of profiles (blocks are independent; a few Python
steps per block, per source, per genre chosen and per greedy row step, none per title), and per
block as P x R x L array work (sources read only the head of their ranked lists that a row needs:
``candidates.block.first_allowed_lists``, ``search_first_allowed``), a few (P, T) mask
operations, one faiss search of ~2 x ``per_source`` results per factor source (P x T x dim inner
products) and one bulk online read of the block's profile features per cell. The catalog-wide
features (titles, trending per region) are read once at ``open``. The ranker runs once per profile
(MLP) or once per block (trees). Memory is bounded by the block, not the run: a few (P, T) masks
(rules, history, titles already placed) and the block's rows, times the blocks in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from candidates.base import CohortRules
from features.schema import MATURITY_LEVELS, REGIONS
from pathways.catalog import Catalog
from pathways.config import PathwaysConfig
from pathways.pageblob import encode_page
from pathways.parallel import ordered_map
from pathways.types import Page, ProfileContext
from ranking.page import assemble_page

if TYPE_CHECKING:
    from ranking.block_rank import ProfileRead

TOP_ROW_SOURCE = "top_picks"


class BuiltPage(NamedTuple):
    """One profile's page as the page store holds it, with its row count (for the run's checks)."""

    profile_id: int
    cell: str
    blob: bytes
    n_rows: int


@dataclass(frozen=True)
class PageBuildSpec:
    """Everything a builder needs, as paths: cheap to ship to a Ray worker."""

    config: PathwaysConfig
    als_dir: Path
    as_of: datetime
    factor_sources: dict[str, tuple[Path, str]] = field(default_factory=dict)  # name -> (artifacts, evidence)
    top_row: Path | None = None  # the learning-to-rank top row, one ranked list per profile
    plays: Path | None = None  # the play events (EVENT_SCHEMA) the sources aggregate; None: the whole lake


def read_plays(spec: PageBuildSpec) -> pa.Table:
    """The events the candidate sources aggregate: ``spec.plays``, or the lake when it is not given."""
    if spec.plays is not None:
        return pq.read_table(spec.plays)
    from features.ingest import read_events

    return read_events(spec.config.lake_dir)


def single_threaded() -> None:
    """One BLAS/OpenMP thread and one torch thread in this process. Pages are built one block per
    process (parallelism comes from workers), and the ranker's float32 results can differ in the
    last bit with the thread count; one thread also runs ~7x faster on this 2-core machine
    (measured: 17 -> 129 profiles/s), so pages are the same bytes in every process."""
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)


_THREAD = threading.local()


def one_openmp_thread() -> None:
    """``single_threaded``'s OpenMP limit for the calling thread, once per thread. OpenMP keeps its
    thread count per thread: a thread started after ``single_threaded`` (``build_blocks``' pool)
    would otherwise give every faiss search and tree ensemble a team of one thread per core, two
    builder threads then running four on two cores (unless OMP_NUM_THREADS says otherwise)."""
    if not getattr(_THREAD, "one_openmp_thread", False):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")
        _THREAD.one_openmp_thread = True


class PageBuilder:
    """Candidates -> ranker of the profile's cell -> page assembler, for blocks of profiles."""

    def __init__(self, spec: PageBuildSpec, catalog: Catalog, sources: list[Any], scorers: dict[str, Any]) -> None:
        self.spec = spec
        self.catalog = catalog
        self.sources = sources
        self.scorers = scorers
        self.rules = CohortRules(catalog)  # the (region, maturity) masks, shared by every block

    @classmethod
    def open(cls, spec: PageBuildSpec) -> PageBuilder:
        from candidates.als import FactorSource
        from candidates.registry import build_sources
        from features.store import FeatureStoreManager
        from pathways import tracking
        from pathways.artifacts.factors import FactorArtifacts
        from pathways.artifacts.registry import load_registered
        from ranking.features import RowScorer

        single_threaded()
        cfg = spec.config
        world = cfg.raw_dir / "world"
        catalog = Catalog.from_table(pq.read_table(world / "titles.parquet"))
        profiles = pq.read_table(world / "profiles.parquet", columns=["profile_id", "region"])
        als = FactorArtifacts.load(spec.als_dir)
        extra: list[Any] = [
            FactorSource(FactorArtifacts.load(path), catalog, cfg.candidates, name=name, evidence=evidence)
            for name, (path, evidence) in spec.factor_sources.items()
        ]
        top_lists = None
        if spec.top_row is not None:
            from candidates.precomputed import PrecomputedSource
            from pathways.artifacts.top_lists import TopListsReader

            top_lists = TopListsReader(spec.top_row)  # row groups on demand: not every profile's list in memory
            extra.append(PrecomputedSource(top_lists, catalog, cfg.candidates, TOP_ROW_SOURCE, "Your top picks"))
        sources = build_sources(als, catalog, cfg.candidates, spec.as_of, read_plays(spec), profiles,
                                trending_half_life_days=cfg.features.trending_half_life_days, extra=extra)
        tracking.configure(cfg.mlflow_uri, cfg.training.experiment_name)
        store = FeatureStoreManager(cfg.features, cfg.feature_repo_dir)
        at_days = spec.as_of.timestamp() / 86_400
        # Control (the champion) orders rows by the learning-to-rank model where it has a list;
        # the challenger cell keeps the impression-trained ranker behind ranker@challenger.
        scorers = {
            cell: RowScorer(load_registered(tracking.alias_uri("ranker", alias), "ranker"), store, catalog, at_days,
                            ltr=top_lists if cell in cfg.experiment.ltr_cells else None, page=cfg.page)
            for cell, alias in cfg.experiment.ranker_aliases.items()
        }
        if cfg.pipeline.compile_trees:
            for scorer in scorers.values():  # a gbdt's trees as native code: ~4x faster than sklearn's walk
                scorer.ranker.compile_trees(cfg.trees_cache_dir)
        first = next(iter(scorers.values()), None)
        for scorer in scorers.values():  # the catalog-wide reads once per run, shared by the cells
            scorer.preload(REGIONS, like=None if scorer is first else first)
        return cls(spec, catalog, sources, scorers)

    def build(self, profiles: list[ProfileContext]) -> list[BuiltPage]:
        """The page of each profile of the block, encoded for the page store: the block's rule masks,
        every source's rows in long form (``generate_block``: one faiss search per source, masks
        instead of per-title loops), one feature matrix and one lookup per cell to re-score them,
        then the assembler's greedy steps for all profiles at once (``choose_block``). Profiles
        that nothing tells apart (``interchangeable``) are built once: their pages are the same bytes."""
        from ranking.block_rank import read_block

        read = read_block(self.scorers, profiles)  # one Feast read of the block, shared by the two steps
        own, of = self.interchangeable(profiles, read)
        built = self._build([profiles[i] for i in own.tolist()], None if read is None else read.of(own))
        return [built[j]._replace(profile_id=p.profile_id) for p, j in zip(profiles, of.tolist())]

    def interchangeable(self, profiles: list[ProfileContext],
                        read: ProfileRead | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(the indices of the profiles whose pages are built, ascending; for each profile, the place
        in them of the one whose page it takes). A page depends on a profile through its context,
        what the sources keep for its id (``candidates.base.holds``: vectors, lists), the learned
        lists its cell's ranker reads and the profile features of its cell's ranker (Feast), never
        on the id itself. So profiles with no history, nothing kept for them, the same context
        (region, maturity ceiling, kids flag, device, cell) and the same features get the same page:
        a profile that has never played anything (a third of a world) takes the page of the first
        one like it in the block. ``read``: the block's profile features (``read_block``), else
        those profiles' are read here."""
        from candidates.base import holds
        from pathways.artifacts.top_lists import flat_lists
        from ranking.block_rank import profile_keys

        n = len(profiles)
        of = np.arange(n)
        blank = np.array([i for i, p in enumerate(profiles)
                          if not (p.history or p.finished or p.in_progress or p.in_progress_ts)], np.int64)
        if len(blank) > 1:
            ids = np.fromiter((profiles[i].profile_id for i in blank.tolist()), np.int64, len(blank))
            kept = np.zeros(len(blank), bool)
            for source in self.sources:
                kept |= holds(source, ids)
            for scorer in self.scorers.values():
                if scorer.ltr is not None:
                    kept |= np.diff(flat_lists(scorer.ltr, ids)[0]) > 0
            free = blank[~kept]
            cells = np.array([self._cell(profiles[i]) for i in free.tolist()], dtype=object)
            first: dict[tuple[Any, ...], int] = {}
            for cell in sorted(set(cells.tolist())):
                members = free[cells == cell]
                for i, features in zip(members.tolist(), profile_keys(self.scorers[cell], profiles, members, read)):
                    p = profiles[i]
                    key = (p.region, p.max_maturity_level, p.is_kids, p.device, p.cell, p.known, features)
                    of[i] = first.setdefault(key, i)
        own = np.flatnonzero(of == np.arange(n))
        return own, np.searchsorted(own, of)

    def _build(self, profiles: list[ProfileContext], read: ProfileRead | None = None) -> list[BuiltPage]:
        from candidates.block import ProfileBlock
        from candidates.registry import generate_all_block
        from ranking.block_page import choose_block
        from ranking.block_rank import rescore_block

        one_openmp_thread()
        block = ProfileBlock(profiles, self.catalog, self.rules)
        rows = generate_all_block(self.sources, block)
        rows = rescore_block(self.scorers, [self._cell(p) for p in profiles], profiles, rows, read)
        pages = choose_block(rows, profiles, self.catalog, self.spec.config.page)
        blobs = pages.encode([p.cell for p in profiles])
        return [BuiltPage(p.profile_id, p.cell, blob, pages.n_rows(i)) for i, (p, blob) in enumerate(zip(profiles, blobs))]

    def build_blocks(self, blocks: Iterable[list[ProfileContext]], threads: int = 1) -> Iterator[list[BuiltPage]]:
        """``build`` of each block, yielded in block order, ``threads`` blocks at a time in this
        process: the heavy steps (numpy, faiss, TorchScript, sklearn, zstd, SQLite) release the GIL, so
        two threads keep both cores of a small machine busy. Blocks are independent (each one's
        bytes are the same on any thread); at most ``2 x threads`` are in flight, so memory stays
        bounded by the block."""
        yield from ordered_map(self.build, blocks, threads, name="pages")

    def build_loop(self, profiles: list[ProfileContext]) -> list[BuiltPage]:
        """The same pages one profile at a time, through ``Page`` objects (the path before blocks:
        the parity reference and the benchmark's baseline)."""
        from candidates.registry import generate_all

        for scorer in self.scorers.values():
            scorer.prefetch([p.profile_id for p in profiles])
        out = []
        for profile in profiles:
            rows = generate_all(self.sources, profile)
            scorer = self.scorers[self._cell(profile)]
            page = assemble_page(scorer.score_rows(profile, rows), profile, self.catalog, self.spec.config.page)
            out.append(BuiltPage(profile.profile_id, profile.cell, encode_page(profile.cell, page), len(page.rows)))
        return out

    def _cell(self, profile: ProfileContext) -> str:
        """The scorer for ``profile``'s cell (control's for a cell without its own ranker)."""
        return profile.cell if profile.cell in self.scorers else "control"

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


Sink = Callable[[list[BuiltPage]], None]


def build_pages(
    spec: PageBuildSpec,
    blocks: Iterable[list[ProfileContext]],
    sink: Sink,
    *,
    total: int | None = None,
    progress: bool = True,
) -> dict[tuple[str, int], Page]:
    """Pages for every block of profiles, each block handed to ``sink`` as soon as it is built (in
    block order in-process, in completion order on Ray); returns the fallback pages."""
    bar = tqdm(total=total, desc="pages", unit="profile", disable=not progress)
    try:
        if spec.config.pipeline.executor == "local":
            builder = PageBuilder.open(spec)
            for part in builder.build_blocks(blocks, spec.config.pipeline.threads):
                sink(part)
                bar.update(len(part))
            return builder.fallbacks()
        return _build_on_ray(spec, blocks, sink, bar)
    finally:
        bar.close()


def _build_on_ray(spec: PageBuildSpec, blocks: Iterable[list[ProfileContext]], sink: Sink, bar: Any) -> dict[tuple[str, int], Page]:
    import ray

    pcfg = spec.config.pipeline
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=pcfg.ray_address, num_cpus=None if pcfg.ray_address else pcfg.workers,
                 include_dashboard=False, log_to_driver=False)
    try:
        actor_cls = ray.remote(num_cpus=1)(_RayPageBuilder)
        actors: list[Any] = [actor_cls.remote(spec) for _ in range(pcfg.workers)]
        todo = iter(blocks)
        pending: dict[Any, Any] = {}  # at most two blocks in flight per actor: memory stays O(block)
        for actor in actors * 2:
            block = next(todo, None)
            if block is not None:
                pending[actor.build.remote(block)] = actor
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(done)
            part = ray.get(done)
            sink(part)
            bar.update(len(part))
            block = next(todo, None)
            if block is not None:
                pending[actor.build.remote(block)] = actor
        fallbacks: dict[tuple[str, int], Page] = ray.get(actors[0].fallbacks.remote())
        return fallbacks
    finally:
        if started_here:
            ray.shutdown()


class _RayPageBuilder:
    """The Ray actor: a PageBuilder opened once per worker process."""

    def __init__(self, spec: PageBuildSpec) -> None:
        self.builder = PageBuilder.open(spec)

    def build(self, profiles: list[ProfileContext]) -> list[BuiltPage]:
        return self.builder.build(profiles)

    def fallbacks(self) -> dict[tuple[str, int], Page]:
        return self.builder.fallbacks()
