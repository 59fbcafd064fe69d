"""The nightly job's stages: each a plain function ``(RunContext) -> outputs dict``.

Outputs are small JSON-able facts (counts, paths, model versions) recorded by the runner so a
resumed run can pick up where it stopped. Heavy objects shared in one process (the feature
store, the catalog) go in ``ctx.cache`` and are rebuilt from disk when a run resumes.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from experiments.allocation import assign_cell
from features.schema import EVENT_SCHEMA
from pathways.catalog import Catalog
from pathways.config import PathwaysConfig
from pathways.snapshot import FALLBACK, SIMILAR, fallback_table
from pathways.types import ProfileContext
from pipelines.runner import RunContext
from pipelines.schedule import UNSAMPLED_DIR, training_events, unsampled_histories

log = logging.getLogger("pathways.nightly")


# ---------------------------------------------------------------- shared loaders (cached)
def world_tables(ctx: RunContext) -> tuple[pa.Table, pa.Table]:
    if "titles" not in ctx.cache:
        raw = ctx.config.raw_dir / "world"
        ctx.cache["titles"] = pq.read_table(raw / "titles.parquet")
        ctx.cache["profiles"] = pq.read_table(raw / "profiles.parquet")
    return ctx.cache["titles"], ctx.cache["profiles"]


def catalog(ctx: RunContext) -> Catalog:
    if "catalog" not in ctx.cache:
        ctx.cache["catalog"] = Catalog.from_table(world_tables(ctx)[0])
    return ctx.cache["catalog"]


def feature_store(ctx: RunContext):  # -> features.store.FeatureStoreManager
    if "store" not in ctx.cache:
        from features.store import FeatureStoreManager

        ctx.cache["store"] = FeatureStoreManager(ctx.config.features, ctx.config.feature_repo_dir)
    return ctx.cache["store"]


def as_of(ctx: RunContext) -> datetime:
    return datetime.fromisoformat(ctx.outputs["features"]["as_of"])


def configure_mlflow(ctx: RunContext) -> None:
    from pathways import tracking

    tracking.configure(ctx.config.mlflow_uri, ctx.config.training.experiment_name)


# ---------------------------------------------------------------- stages
def ingest(ctx: RunContext) -> dict[str, Any]:
    """New event files into the lake. Cost: time linear in the new events; memory three chunks of
    ``features.ingest_chunk_rows`` rows (read ahead, checked, written) plus 12 bytes per event id of
    the days it touches (dedupe: 64-bit hashes, ``features.lake_index.EventIdIndex``), the ids' strings
    only of the chunk being written."""
    from features.ingest_nightly import ingest_new

    titles, profiles = world_tables(ctx)
    event_files = [f for f in ctx.cache["input_files"] if f.name not in ("titles.parquet", "profiles.parquet")]
    totals = ingest_new(event_files, titles, profiles, ctx.config.lake_dir, dedupe_days=ctx.config.stream.dedupe_days,
                        chunk_rows=ctx.config.features.ingest_chunk_rows)
    for moved in totals["rejected"]:
        log.warning("malformed event file set aside: %s (see its .report.json)", moved)
    log.info("ingest: %s", {k: v for k, v in totals.items() if k != "rejected"})
    return {**totals, "lake": str(ctx.config.lake_dir)}


def features(ctx: RunContext) -> dict[str, Any]:
    """Daily feature tables into the offline store, by profile range (``features/compute_ranges.py``).
    Cost: time linear in events plus (profiles + titles x regions) x days; memory one range of
    ``pipeline.history_shard_profiles`` profiles' events and one block of ``features.block_profiles``
    profiles' features, never the whole lake or a whole table."""
    from features.compute import genre_vocabulary
    from features.compute_ranges import compute_features_by_range

    titles, profiles = world_tables(ctx)
    cfg = ctx.config
    work = Path(tempfile.mkdtemp(prefix="feature-ranges-", dir=ctx.run_dir))
    try:
        with feature_store(ctx).feature_writer() as writer:
            span = compute_features_by_range(cfg.lake_dir, titles, profiles, writer.append, work,
                                             cfg.pipeline.history_shard_profiles, cfg.features.block_profiles, cfg.features)
            writer.commit(genre_vocabulary(titles))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert span.last is not None  # the lake held events: compute_features_by_range checked
    return {"as_of": span.last.isoformat(), "events": span.events}  # as_of: the log's last moment (UTC)


def materialize(ctx: RunContext) -> dict[str, Any]:
    """Feast apply + materialize up to the data's end; with ``schedule.incremental_materialize``
    only what is newer than the last run's materialization (the whole TTL the first time, and
    after a view's features changed: ``FeatureStoreManager.apply`` reset its online table).
    Cost: linear in (profiles + titles + title-regions) x the days loaded."""
    from pipelines.schedule import last_materialized

    store = feature_store(ctx)
    reset = store.apply()  # views whose features changed: their online tables start empty
    end = as_of(ctx) + timedelta(seconds=1)
    start = last_materialized(ctx, end) if ctx.config.schedule.incremental_materialize and not reset else None
    store.materialize(end, start)
    return {"materialized_until": end.isoformat(), "materialized_from": start.isoformat() if start else None,
            "repo": str(ctx.config.feature_repo_dir), "reset_views": reset}


def train_als(ctx: RunContext) -> dict[str, Any]:
    """ALS on the training events (``schedule``'s sample / window); the profiles the sample left out
    are folded in (one least-squares solve each against the item factors). Cost: the fit linear in
    the sample's plays and in (sampled profiles + titles) x factors^2 per iteration; the fold-in
    linear in the other profiles' plays x factors^2, one profile range in memory plus the factors."""
    from training.als import train_als as fit_als

    configure_mlflow(ctx)
    out = ctx.stage_dir("train_als")
    result = fit_als(training_events(ctx, "train_als"), ctx.config.training, out, unsampled=unsampled_histories(ctx, "train_als"))
    return {"path": str(out), **{k: v for k, v in result.items() if isinstance(v, (int, float, str))}}


def train_retrieval(ctx: RunContext) -> dict[str, Any]:
    """The retrieval models of ``candidates.retrieval_rows`` on the lake's interactions, saved as factor
    artifacts so the pages stage retrieves from them through faiss like ALS (FactorSource); the
    profiles a sample left out are encoded from their histories (fold-in). Cost: epochs x the
    training events' interactions (a sample caps it), embeddings of titles, plus inference linear
    in the left-out profiles' interactions (one profile range in memory, plus the vectors). The
    models the top row also uses as generators are saved as fit, for it to take (``training.shared_fit``)."""
    from training.retrieval import train_retrieval as fit
    from training.top_row import genre_features

    configure_mlflow(ctx)
    names = tuple(ctx.config.candidates.retrieval_rows)
    return fit(training_events(ctx, "train_retrieval"), catalog(ctx).title_ids, ctx.stage_dir("train_retrieval"), names,
               ctx.config.models, ctx.config.training.seed, ctx.run_id, unsampled_histories(ctx, "train_retrieval"),
               share=tuple(n for n in names if n in ctx.config.models.final.generators),
               item_features=functools.partial(genre_features, catalog(ctx)))  # the top row's: its two-tower is this fit


def retrieval_sources(config: PathwaysConfig, retrieval_dir: Path) -> dict[str, tuple[Path, str]]:
    """Each nightly retrieval model's factor folder and its row's title, for the page builder."""
    return {name: (retrieval_dir / name, title) for name, title in config.candidates.retrieval_rows.items()}


def train_top_row(ctx: RunContext) -> dict[str, Any]:
    """The learning-to-rank top row (PathwaysFinal), registered as top_row@champion. Cost: fitting
    grows with the training interactions (a sample caps it) and titles^2 (EASE); its lists are
    written per block of users, ``pipeline.threads`` blocks at once (``training/top_row.py``), the
    profiles a sample left out folded in per profile range: linear in profiles, one range in memory.
    A generator ``train_retrieval`` saved (SASRec, the two-tower) is taken instead of fit again when it was fit on the same events
    with the same settings, seed and item features (``training.shared_fit``: one fit of each a night); otherwise the top row fits its own."""
    from training.top_row import train_top_row as fit

    configure_mlflow(ctx)
    retrieval = ctx.outputs.get("train_retrieval", {})
    shared = {k.removesuffix("_shared"): v for k, v in retrieval.items() if k.endswith("_shared") and v}
    try:
        return fit(training_events(ctx, "train_top_row"), catalog(ctx), ctx.stage_dir("train_top_row"), ctx.config.training.seed,
                   None, f"top_row-{ctx.run_id}", ctx.config.models, unsampled_histories(ctx, "train_top_row"), shared,
                   ctx.config.pipeline.threads)
    except ValueError as exc:  # too little history to carve a validation split and train on it
        log.warning("top row not trained: %s", exc)
        return {"path": None, "skipped": str(exc)}


def train_ranker(ctx: RunContext) -> dict[str, Any]:
    """The page rankers on impressions with point-in-time features. Cost: the training events in
    memory (a sample caps them); the fit on at most ``training.ranker_max_rows`` rows."""
    from pathways import tracking
    from ranking.features import FEATURE_COLUMNS, training_frame
    from training.ranker import log_ranker
    from training.ranker import train_ranker as fit

    configure_mlflow(ctx)
    frame = training_frame(training_events(ctx, "train_ranker"), feature_store(ctx), catalog(ctx), world_tables(ctx)[1],
                           max_rows=ctx.config.training.ranker_max_rows, seed=ctx.config.training.seed)
    cfg = ctx.config.training
    out: dict[str, Any] = {"impressions": len(frame)}
    for kind, alias in (("mlp", tracking.CHAMPION), ("gbdt", tracking.CHALLENGER)):
        result = log_ranker(fit(frame, FEATURE_COLUMNS, cfg, kind=kind), f"ranker-{kind}-{ctx.run_id}", alias,
                            cfg.model_dump(mode="json"))
        out[f"{alias}_version"] = result.version
        out[f"{alias}_auc"] = round(result.metrics["valid_auc"], 4)
    return out


def artwork(ctx: RunContext) -> dict[str, Any]:
    """Learn the artwork policy from logged impressions (contexts point-in-time), OPE, maybe promote.
    Reads the training events (``schedule``'s sample / window). Cost: their impressions, clicks and
    plays in memory and a point-in-time feature join per impression (linear in those events)."""
    import numpy as np
    import pandas as pd

    from bandits.features import ArmFeaturizer, artwork_context_names, contexts_in_blocks
    from bandits.log import BanditLog
    from bandits.nightly import train_and_maybe_promote

    configure_mlflow(ctx)
    store = feature_store(ctx)
    titles, _ = world_tables(ctx)
    events = training_events(ctx, "artwork")  # the training stages' sample / window, already in memory
    events = events.filter(pc.is_in(events.column("event_type"), pa.array(["artwork_impression", "artwork_click", "play"])))
    names = artwork_context_names(store.genres())
    imp = events.filter(pc.equal(events.column("event_type"), "artwork_impression"))
    if imp.num_rows < ctx.config.bandits.min_impressions:
        return {"skipped": f"only {imp.num_rows} artwork impressions logged (need {ctx.config.bandits.min_impressions})"}
    # What the policy knew at each impression: the genre affinity as of that moment.
    entity = pd.DataFrame({"profile_id": imp.column("profile_id").to_numpy(),
                           "event_timestamp": imp.column("ts").to_pandas()})
    def affinities(lo: int, hi: int) -> Any:
        return store.historical(entity.iloc[lo:hi], ["profile_stats:genre_affinity"])["profile_stats__genre_affinity"].to_numpy()

    # genre_contexts per block of impressions: the same function serving uses
    contexts = contexts_in_blocks(affinities, len(entity), store.genres(), names, ctx.config.bandits.context_block_rows)
    order = titles.sort_by("title_id")
    featurizer = ArmFeaturizer.build(names, order.column("title_id").to_numpy(), order.column("artwork_themes").to_pylist())
    n_arms = dict(zip(titles.column("title_id").to_pylist(), (len(a) for a in titles.column("artwork_ids").to_pylist())))
    # Impressions first (their order is the contexts' order), then the events that reward them.
    log_ = BanditLog.from_events(
        pa.concat_tables([imp, events.filter(pc.is_in(events.column("event_type"), pa.array(["artwork_click", "play"])))]),
        context_fn=lambda pids: contexts,
        n_arms_fn=lambda tids: np.array([n_arms[int(t)] for t in tids]),
        context_names=names,
    )
    decision = train_and_maybe_promote(log_, ctx.config.mlflow_uri, featurizer, ctx.config.bandits)
    return {
        "rounds": len(log_),
        "promoted": decision.promoted,
        "reason": decision.reason,
        "candidate_version": decision.candidate_version,
        "champion_version": decision.champion_version,
    }


HISTORIES_PREFIX = "histories-"  # profile_blocks' shard folders under the run dir (a SIGKILL leaves them behind)


def profile_blocks(ctx: RunContext, skip: set[int] | None = None) -> tuple[int, Iterator[list[ProfileContext]]]:
    """(profiles to build, blocks of ``pipeline.chunk_size`` contexts in profile id order), skipping
    the profiles in ``skip`` (done before a resume). Contexts are made one block at a time from
    per-profile features (history, finished, in progress) computed per range of
    ``pipeline.history_shard_profiles`` profiles from one split pass over the lake's progress
    events (``features.history.histories_by_range``), never from the whole lake at once.
    Cost: time linear in events; memory one range's events and up to three ranges' features (the one
    being built, the next one queued, and the one after it being computed), whatever the profiles."""
    from features.history import histories_by_range
    from pathways.parallel import Prefetched

    titles, profiles = world_tables(ctx)
    cfg = ctx.config
    table = profiles.select(["profile_id", "account_id", "region", "max_maturity_level", "is_kids"]).sort_by("profile_id")
    if skip:
        table = table.filter(pc.invert(pc.is_in(table.column("profile_id"), pa.array(sorted(skip), pa.int64()))))

    def context(row: dict[str, Any], states: dict[int, Any], histories: dict[int, tuple[int, ...]]) -> ProfileContext:
        pid = int(row["profile_id"])
        state = states.get(pid)
        return ProfileContext(
            profile_id=pid,
            account_id=int(row["account_id"]),
            region=row["region"],
            max_maturity_level=int(row["max_maturity_level"]),
            is_kids=bool(row["is_kids"]),
            cell=assign_cell(pid, cfg.experiment),
            history=histories.get(pid, ()),
            finished=state.finished if state else frozenset(),
            in_progress={t: f for t, (f, _) in state.in_progress.items()} if state else {},
            in_progress_ts={t: ts for t, (_, ts) in state.in_progress.items()} if state else {},
        )

    def blocks() -> Iterator[list[ProfileContext]]:
        work = Path(tempfile.mkdtemp(prefix=HISTORIES_PREFIX, dir=ctx.run_dir))
        # the next range's features are computed on a thread of their own while this range's blocks
        # are built (a range of 50,000 profiles took ~2.5 s, which the page builders had waited for)
        ranges = Prefetched(histories_by_range(cfg.lake_dir, titles, table.column("profile_id").to_numpy(),
                                               cfg.pipeline.history_shard_profiles, work,
                                               cfg.candidates.finished_fraction, cfg.candidates.continue_min_fraction),
                            depth=1, name="history-ranges")
        try:
            cut = -1
            states: dict[int, Any] = {}
            histories: dict[int, tuple[int, ...]] = {}
            for i in range(0, table.num_rows, cfg.pipeline.chunk_size):
                block = []
                for row in table.slice(i, cfg.pipeline.chunk_size).to_pylist():
                    while row["profile_id"] > cut:
                        cut, states, histories = next(ranges)
                    block.append(context(row, states, histories))
                yield block
        finally:
            ranges.close()  # its thread stops before the shards' folder goes
            shutil.rmtree(work, ignore_errors=True)

    return table.num_rows, blocks()


def _profile_contexts(ctx: RunContext) -> list[ProfileContext]:
    """Every profile's context, in profile id order (tests and benchmarks; the stage uses blocks)."""
    return [p for block in profile_blocks(ctx)[1] for p in block]


def pages(ctx: RunContext) -> dict[str, Any]:
    """Pages for every profile, block by block into the run's ``pages.sqlite`` (resumable: a killed
    run keeps its committed blocks), the fallback pages and the similar-titles table (pipelines/similar.py).
    Cost: time linear in profiles (blocks) plus one pass over the lake's progress events
    (``profile_blocks``, read ahead on a thread: its first pass overlaps loading the models);
    memory one history range and the page builder's models, not profiles."""
    from pathways.pagestore import PAGES_SQLITE, SqlitePageStore
    from pathways.parallel import Prefetched
    from pipelines.page_builder import PageBuildSpec, build_pages
    from pipelines.publish import page_counts
    from pipelines.similar import write_similar_titles

    ctx.cache.pop("training_events", None)  # training is over: its events leave memory
    shutil.rmtree(ctx.run_dir / UNSAMPLED_DIR, ignore_errors=True)  # and the left-out profiles' histories the disk
    for stale in ctx.run_dir.glob(HISTORIES_PREFIX + "*"):  # history shards of a killed attempt (the lock: none is live)
        shutil.rmtree(stale, ignore_errors=True)
    work = ctx.stage_dir("pages")
    upstream = json.dumps({k: v for k, v in ctx.outputs.items() if k not in ("pages", "publish")}, sort_keys=True, default=str)
    if not ctx.resume or _read(work / "upstream.json") != upstream:  # pages of other models are not resumed
        (work / PAGES_SQLITE).unlink(missing_ok=True)
        (work / "upstream.json").write_text(upstream)
    if not ctx.resume:  # --no-resume redoes all of the stage, the plays it extracts from the lake too
        (work / "plays.parquet").unlink(missing_ok=True)
    writer = SqlitePageStore().writer(work, resumable=True)
    done = writer.profile_ids()
    total, contexts = profile_blocks(ctx, skip=done)
    blocks = Prefetched(contexts, depth=2, name="profile-blocks")  # its lake pass overlaps the loading below
    try:
        plays = work / "plays.parquet"
        window = _write_plays(ctx, plays)
        retrieval = Path(ctx.outputs["train_retrieval"]["dir"])
        extra = retrieval_sources(ctx.config, retrieval)
        top_row = ctx.outputs["train_top_row"].get("path")
        spec = PageBuildSpec(ctx.config, Path(ctx.outputs["train_als"]["path"]), as_of(ctx), extra,
                             Path(top_row) if top_row else None, plays)
        fallbacks = build_pages(spec, blocks, lambda part: writer.put_many((b.profile_id, b.blob) for b in part),
                                total=total, progress=ctx.progress)
    except BaseException:
        writer.release()  # committed blocks stay: the next run resumes after them
        raise
    finally:
        blocks.close()
    writer.close()
    pq.write_table(fallback_table(fallbacks), work / FALLBACK)
    similar = write_similar_titles(Path(ctx.outputs["train_als"]["path"]), ctx.config.candidates.similar_titles_k,
                                   work / SIMILAR, catalog(ctx).title_ids)
    return {
        **page_counts(work / PAGES_SQLITE),
        "fallback_pages": len(fallbacks),
        "similar_titles": similar,
        "resumed_profiles": len(done),
        "executor": ctx.config.pipeline.executor,
        "dir": str(work),
        **window,
    }


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _write_plays(ctx: RunContext, path: Path) -> dict[str, str]:
    """The play events the candidate sources aggregate, once per run (streamed batch by batch,
    atomically); returns the data window (first and last event in the lake), taken from the same
    pass when the plays are written (from the ``ts`` column alone when a resume finds them).
    Memory: one batch."""
    from features.lake_scan import iter_lake
    from features.schema import EventType

    lo, hi = None, None

    def widen(t: pa.Table) -> None:
        nonlocal lo, hi
        if t.num_rows:
            bounds = pc.min_max(t["ts"]).as_py()
            lo = bounds["min"] if lo is None else min(lo, bounds["min"])
            hi = bounds["max"] if hi is None else max(hi, bounds["max"])

    if path.is_file():
        for t in iter_lake(ctx.config.lake_dir, ["ts"]):
            widen(t)
    else:
        tmp = path.with_suffix(".tmp")
        play = pa.scalar(EventType.PLAY.value, pa.string())
        with pq.ParquetWriter(tmp, EVENT_SCHEMA) as writer:
            for batch in iter_lake(ctx.config.lake_dir):  # every event counts for the window, plays are kept
                widen(batch)
                writer.write_table(batch.filter(pc.equal(batch["event_type"], play)))
        if lo is None:
            tmp.unlink()
        else:
            tmp.replace(path)
    if lo is None or hi is None:
        raise ValueError("the lake holds no accepted events")
    return {"window_start": lo.isoformat(), "window_end": hi.isoformat()}


def publish(ctx: RunContext) -> dict[str, Any]:
    """The snapshot beside the live one, CURRENT switched last. Cost: linear in pages (copied)."""
    from pipelines.publish import publish_run

    return publish_run(ctx, world_tables(ctx))
