"""The nightly job's stages: each a plain function ``(RunContext) -> outputs dict``.

Outputs are small JSON-able facts (counts, paths, model versions) recorded by the runner so a
resumed run can pick up where it stopped. Heavy objects shared in one process (the feature
store, the catalog) go in ``ctx.cache`` and are rebuilt from disk when a run resumes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from experiments.allocation import assign_cell
from pathways.catalog import Catalog
from pathways.snapshot import FALLBACK, PAGES, PROFILES, TITLES, SnapshotWriter, new_version, prune
from pathways.types import ProfileContext
from pipelines.runner import RunContext

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


def lake_events(ctx: RunContext) -> pa.Table:
    if "events" not in ctx.cache:
        from features.ingest import read_events

        ctx.cache["events"] = read_events(ctx.config.lake_dir)
    return ctx.cache["events"]


def feature_store(ctx: RunContext):  # -> features.store.FeatureStoreManager
    if "store" not in ctx.cache:
        from features.store import FeatureStoreManager

        ctx.cache["store"] = FeatureStoreManager(ctx.config.features, ctx.config.feature_repo_dir)
    return ctx.cache["store"]


def as_of(ctx: RunContext) -> datetime:
    return datetime.fromisoformat(ctx.outputs["features"]["as_of"])


def configure_mlflow(ctx: RunContext) -> None:
    from training import tracking

    tracking.configure(ctx.config.mlflow_uri, ctx.config.training.experiment_name)


# ---------------------------------------------------------------- stages
def ingest(ctx: RunContext) -> dict[str, Any]:
    from features.ingest import ingest as ingest_file

    titles, profiles = world_tables(ctx)
    event_files = [f for f in ctx.cache["input_files"] if f.name not in ("titles.parquet", "profiles.parquet")]
    totals = {"rows_in": 0, "accepted": 0, "quarantined": 0, "files": 0, "already_ingested": 0}
    by_reason: dict[str, int] = {}
    for path in tqdm(event_files, desc="ingest", unit="file", disable=not ctx.progress):
        report = ingest_file(path, titles, profiles, ctx.config.lake_dir)
        log.info("%s: %s", path.name, report)
        totals["files"] += 1
        if report.already_ingested:
            totals["already_ingested"] += 1
            continue
        totals["rows_in"] += report.rows_in
        totals["accepted"] += report.accepted
        totals["quarantined"] += report.quarantined
        for reason, n in report.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    if totals["rows_in"] != totals["accepted"] + totals["quarantined"]:
        raise RuntimeError(f"event accounting does not balance: {totals}")
    return {**totals, "by_reason": by_reason, "lake": str(ctx.config.lake_dir)}


def features(ctx: RunContext) -> dict[str, Any]:
    from features.compute import compute_features

    titles, profiles = world_tables(ctx)
    events = lake_events(ctx)
    if events.num_rows == 0:
        raise ValueError("the lake holds no accepted events: nothing to compute features from")
    end = pc.max(events.column("ts")).as_py()  # tz-aware UTC datetime: the log's last moment
    frames = compute_features(events, titles, profiles)
    store = feature_store(ctx)
    store.write_features(frames)
    return {"as_of": end.isoformat(), "events": events.num_rows}


def materialize(ctx: RunContext) -> dict[str, Any]:
    store = feature_store(ctx)
    store.apply()
    end = as_of(ctx) + timedelta(seconds=1)
    store.materialize(end)
    return {"materialized_until": end.isoformat(), "repo": str(ctx.config.feature_repo_dir)}


def train_als(ctx: RunContext) -> dict[str, Any]:
    from training.als import train_als as fit_als

    configure_mlflow(ctx)
    out = ctx.stage_dir("train_als")
    result = fit_als(lake_events(ctx), ctx.config.training, out)
    return {"path": str(out), **{k: v for k, v in result.items() if isinstance(v, (int, float, str))}}


RETRIEVAL_MODELS = {"two_tower": "Recommended for you", "sasrec": "Up next for you"}


def train_retrieval(ctx: RunContext) -> dict[str, Any]:
    """Two-tower and SASRec on the lake's interactions; their user and item vectors are saved as
    factor artifacts so the pages stage retrieves from them through faiss like ALS (FactorSource)."""
    import time
    from dataclasses import asdict

    import mlflow
    import numpy as np

    from candidates.als import AlsArtifacts
    from training import tracking
    from training.data import interactions_from_events
    from training.models import SASRec, TwoTower

    configure_mlflow(ctx)
    inter = interactions_from_events(lake_events(ctx), item_ids=catalog(ctx).title_ids)
    users = np.arange(inter.n_users)
    seed = ctx.config.training.seed
    out: dict[str, Any] = {"interactions": len(inter), "dir": str(ctx.stage_dir("train_retrieval"))}
    for name in RETRIEVAL_MODELS:
        with mlflow.start_run(run_name=f"{name}-{ctx.run_id}"):
            t0 = time.perf_counter()
            model = (TwoTower if name == "two_tower" else SASRec)(seed=seed).fit(inter)
            seconds = time.perf_counter() - t0
            if name == "two_tower":
                user_vecs, item_vecs = model.user_embeddings(users), model.item_embeddings()
            else:  # SASRec's next-item logits are its last hidden state . the item embeddings
                user_vecs, item_vecs = model.user_states(users), model.net_.item_emb.weight[1:].detach().numpy()
            AlsArtifacts(user_vecs, item_vecs, inter.user_ids, inter.item_ids, {"fit_seconds": seconds}).save(
                ctx.stage_dir("train_retrieval") / name)
            tracking.log_params_flat(asdict(model.config))
            mlflow.log_metrics({"fit_seconds": seconds, "n_interactions": float(len(inter))})
        out[f"{name}_seconds"] = round(seconds, 2)
    return out


def train_top_row(ctx: RunContext) -> dict[str, Any]:
    """The learning-to-rank top row (PathwaysFinal), registered as top_row@champion."""
    from training.top_row import train_top_row as fit

    configure_mlflow(ctx)
    try:
        return fit(lake_events(ctx), catalog(ctx), ctx.stage_dir("train_top_row"), ctx.config.training.seed,
                   None, f"top_row-{ctx.run_id}")
    except ValueError as exc:  # too little history to carve a validation split and train on it
        log.warning("top row not trained: %s", exc)
        return {"path": None, "skipped": str(exc)}


def train_ranker(ctx: RunContext) -> dict[str, Any]:
    from ranking.features import FEATURE_COLUMNS, training_frame
    from training import tracking
    from training.ranker import log_ranker, train_ranker as fit

    configure_mlflow(ctx)
    frame = training_frame(lake_events(ctx), feature_store(ctx), catalog(ctx), world_tables(ctx)[1],
                           max_rows=ctx.config.training.ranker_max_rows, seed=ctx.config.training.seed)
    cfg = ctx.config.training
    out: dict[str, Any] = {"impressions": len(frame)}
    for kind, alias in (("mlp", tracking.CHAMPION), ("gbdt", tracking.CHALLENGER)):
        result = log_ranker(fit(frame, FEATURE_COLUMNS, cfg, kind=kind), f"ranker-{kind}-{ctx.run_id}", alias,
                            cfg.model_dump(mode="json"))
        out[f"{alias}_version"] = result.version
        out[f"{alias}_auc"] = round(result.metrics["valid_auc"], 4)
    return out


def artwork_context_names(genres: tuple[str, ...]) -> tuple[str, ...]:
    """The artwork policy's context: the profile's genre affinity, one slot per genre."""
    return tuple(f"genre:{g}" for g in genres)


def artwork(ctx: RunContext) -> dict[str, Any]:
    """Learn the artwork policy from logged impressions (contexts point-in-time), OPE, maybe promote."""
    import numpy as np
    import pandas as pd

    from bandits.features import ArmFeaturizer
    from bandits.log import BanditLog
    from bandits.nightly import train_and_maybe_promote

    configure_mlflow(ctx)
    store = feature_store(ctx)
    titles, _ = world_tables(ctx)
    events = lake_events(ctx)
    names = artwork_context_names(store.genres())
    imp = events.filter(pc.equal(events.column("event_type"), "artwork_impression"))
    if imp.num_rows < 200:
        return {"skipped": f"only {imp.num_rows} artwork impressions logged (need 200)"}
    # What the policy knew at each impression: the genre affinity as of that moment.
    entity = pd.DataFrame({"profile_id": imp.column("profile_id").to_numpy(),
                           "event_timestamp": imp.column("ts").to_pandas()})
    hist = store.historical(entity, ["profile_stats:genre_affinity"])["profile_stats__genre_affinity"]
    width = len(names)
    contexts = np.zeros((imp.num_rows, width), np.float32)
    for i, a in enumerate(hist.to_numpy()):
        if a is not None and not (isinstance(a, float) and np.isnan(a)) and len(a) == width:
            contexts[i] = a
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
    decision = train_and_maybe_promote(log_, ctx.config.mlflow_uri, featurizer)
    return {
        "rounds": len(log_),
        "promoted": decision.promoted,
        "reason": decision.reason,
        "candidate_version": decision.candidate_version,
        "champion_version": decision.champion_version,
    }


def _profile_contexts(ctx: RunContext) -> list[ProfileContext]:
    from features.history import playback_states, profile_histories

    titles, profiles = world_tables(ctx)
    events = lake_events(ctx)
    cfg = ctx.config
    states = playback_states(events, titles, cfg.candidates.finished_fraction, cfg.candidates.continue_min_fraction)
    histories = profile_histories(events)
    out = []
    for row in profiles.to_pylist():
        pid = int(row["profile_id"])
        state = states.get(pid)
        out.append(
            ProfileContext(
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
        )
    return out


def pages(ctx: RunContext) -> dict[str, Any]:
    from pipelines.page_builder import PageBuildSpec, build_pages

    retrieval = Path(ctx.outputs["train_retrieval"]["dir"])
    extra = {name: (retrieval / name, evidence) for name, evidence in RETRIEVAL_MODELS.items()}
    top_row = ctx.outputs["train_top_row"].get("path")
    spec = PageBuildSpec(ctx.config, Path(ctx.outputs["train_als"]["path"]), as_of(ctx), extra,
                         Path(top_row) if top_row else None)
    records, fallbacks = build_pages(spec, _profile_contexts(ctx), progress=ctx.progress)
    writer = SnapshotWriter(ctx.stage_dir("pages"), "pages")  # the snapshot's Parquet layout, in the run dir
    writer.write_page_json([(pid, cell, page) for pid, cell, page, _ in records])
    writer.write_fallbacks(fallbacks)
    return {
        "profiles": len(records),
        "rows": sum(n for *_, n in records),
        "empty_pages": sum(1 for *_, n in records if n == 0),
        "fallback_pages": len(fallbacks),
        "executor": ctx.config.pipeline.executor,
        "dir": str(writer.staging),
    }


def publish(ctx: RunContext) -> dict[str, Any]:
    staged = Path(ctx.outputs["pages"]["dir"])
    titles, profiles = world_tables(ctx)
    version = new_version()
    writer = SnapshotWriter(ctx.config.snapshots_dir, version)
    try:
        for name in (PAGES, FALLBACK):
            writer.write_table(name, pq.read_table(staged / name))
        writer.write_table(TITLES, titles)
        writer.write_table(PROFILES, profiles)
        live = writer.publish(
            {
                "run_id": ctx.run_id,
                "as_of": ctx.outputs["features"]["as_of"],
                "models": {k: v for k, v in ctx.outputs.get("train_ranker", {}).items() if k.endswith("version")},
                "counts": {k: v for k, v in ctx.outputs["pages"].items() if k != "dir"},
                "config": ctx.config.model_dump(mode="json"),
            }
        )
    except BaseException:
        writer.abort()
        raise
    removed = prune(ctx.config.snapshots_dir, keep=ctx.config.pipeline.keep_snapshots)
    return {"version": version, "path": str(live), "pruned": len(removed)}
