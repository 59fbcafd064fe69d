"""Publishing a nightly run: checks against the live snapshot, the page store, the manifest, retention.

``publish_run(ctx, (titles, profiles))`` stages the snapshot (the run's ``pages.sqlite`` copied
whole, with every profile's record added to it for serving: ``pathways.profilerecords``;
fallbacks, titles, profiles), refuses it when its page count or share of empty pages is
off from the live snapshot's beyond ``publish.max_page_count_change`` /
``publish.max_empty_share_increase`` (``PublishRefused``; the live snapshot stays), writes the
Redis page version (pages and profile records) first when the page store is Redis, then switches ``CURRENT`` and the Redis
pointer, and prunes old snapshots, Redis versions and run folders. The manifest records what
the snapshot was made from: MLflow model versions, the Feast feature services, the data
window, the code version (git commit, no secrets) and a checksum of every page.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from pathways.config import PathwaysConfig
from pathways.pageblob import row_count
from pathways.pagestore import PAGES_SQLITE, RedisPageStore
from pathways.profilerecords import profile_rows, read_profiles, write_profiles
from pathways.snapshot import (
    FALLBACK,
    PROFILES,
    SIMILAR,
    TITLES,
    SnapshotWriter,
    current_dir,
    iter_page_blobs,
    new_version,
    pages_checksum,
    prune,
    read_manifest,
    settle,
)
from pipelines.runner import RunContext
from pipelines.schedule import referenced_runs

log = logging.getLogger("pathways.publish")

TRAINING_STAGES = ("train_als", "train_retrieval", "train_top_row", "train_ranker", "artwork")


class PublishRefused(RuntimeError):
    """The new snapshot differs from the live one beyond the configured limits."""


def page_counts(pages_sqlite: Path) -> dict[str, int]:
    """profiles, rows and empty pages of a ``pages.sqlite`` (reads only each page's header)."""
    profiles = rows = empty = 0
    for block in iter_page_blobs(pages_sqlite):
        for _, blob in block:
            n = row_count(blob)
            profiles += 1
            rows += n
            empty += n == 0
    return {"profiles": profiles, "rows": rows, "empty_pages": empty}


def check_against_previous(counts: dict[str, Any], previous: dict[str, Any] | None, config: PathwaysConfig) -> None:
    """Raise ``PublishRefused`` when ``counts`` (profiles, empty_pages) are off from ``previous``'s."""
    if not previous or not previous.get("profiles"):
        return
    limits = config.publish
    new_n, old_n = int(counts["profiles"]), int(previous["profiles"])
    change = abs(new_n / old_n - 1.0)
    if change > limits.max_page_count_change:
        raise PublishRefused(f"page count {new_n:,} is {change:.0%} off the live snapshot's {old_n:,} "
                             f"(publish.max_page_count_change = {limits.max_page_count_change:.0%})")
    new_empty = int(counts["empty_pages"]) / max(new_n, 1)
    old_empty = int(previous.get("empty_pages", 0)) / old_n
    if new_empty - old_empty > limits.max_empty_share_increase:
        raise PublishRefused(f"empty pages {new_empty:.1%} against the live snapshot's {old_empty:.1%} "
                             f"(publish.max_empty_share_increase = {limits.max_empty_share_increase:.1%})")


def page_store_backend(config: PathwaysConfig) -> str:
    """``sqlite`` or ``redis``: ``publish.page_store``, where ``auto`` follows ``features.online_store``."""
    backend = config.publish.page_store
    return ("redis" if config.features.online_store == "redis" else "sqlite") if backend == "auto" else backend


def redis_url(config: PathwaysConfig) -> str:
    return config.publish.redis_url or config.features.redis_connection


def _without_password(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"redis://{url}")
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def code_version(repo: Path | None = None) -> dict[str, Any]:
    """The git commit of the code and whether the tree had local changes (None outside git)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True,
                               text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "dirty": None}
    return {"git_sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _models(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Per training stage, the MLflow facts it recorded (model URIs, versions, run ids, aliases)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in TRAINING_STAGES:
        facts = ctx.outputs.get(stage, {})
        kept = {k: v for k, v in facts.items()
                if isinstance(v, (str, int, bool)) and any(w in k for w in ("version", "uri", "run", "promoted"))}
        if kept:
            out[stage] = kept
    return out


def _feature_services(ctx: RunContext) -> dict[str, Any]:
    from pipelines.stages import feature_store

    try:
        services = sorted(s.name for s in feature_store(ctx).store.list_feature_services())
    except Exception as exc:  # noqa: BLE001 - the manifest says what it could not read
        services = [f"unavailable: {type(exc).__name__}"]
    return {"project": ctx.config.features.project, "services": services,
            "materialized_until": ctx.outputs.get("materialize", {}).get("materialized_until")}


def manifest_for(ctx: RunContext, checksum: str, page_store: dict[str, Any]) -> dict[str, Any]:
    pages = ctx.outputs["pages"]
    return {
        "run_id": ctx.run_id,
        "as_of": ctx.outputs["features"]["as_of"],
        "data_window": {"start": pages.get("window_start"), "end": pages.get("window_end")},
        "models": _models(ctx),
        "features": _feature_services(ctx),
        "code": code_version(),
        "counts": {k: pages[k] for k in ("profiles", "rows", "empty_pages", "fallback_pages") if k in pages},
        "pages_sha256": checksum,
        "page_store": page_store,
        "config": ctx.config.model_dump(mode="json"),
    }


def _write_redis(config: PathwaysConfig, version: str, pages_sqlite: Path) -> tuple[RedisPageStore, dict[str, Any]]:
    cfg = config.publish
    url = redis_url(config)
    store = RedisPageStore.from_url(url, cfg.redis_prefix, timeout_s=max(cfg.redis_timeout_s, 5.0))
    writer = store.writer(version, block=cfg.write_block)
    for block in iter_page_blobs(pages_sqlite, cfg.write_block):
        writer.put_many(block)
    records = read_profiles(pages_sqlite, cfg.write_block)
    if records is not None:
        writer.put_profiles(*records)
    writer.close()
    info = {"backend": "redis", "url": _without_password(url), "prefix": cfg.redis_prefix,
            "timeout_s": cfg.redis_timeout_s}
    return store, info


def publish_run(ctx: RunContext, world: tuple[pa.Table, pa.Table]) -> dict[str, Any]:
    """Check, stage and publish the run's pages (see the module docstring)."""
    config = ctx.config
    root = config.snapshots_dir
    work = Path(ctx.outputs["pages"]["dir"])
    try:
        previous = read_manifest(current_dir(root)).get("counts")
    except Exception:  # noqa: BLE001 - nothing live yet (or unreadable): nothing to compare with
        previous = None
    check_against_previous(ctx.outputs["pages"], previous, config)
    version = new_version()
    writer = SnapshotWriter(root, version)
    redis_store = None
    with ThreadPoolExecutor(1, thread_name_prefix="pages-checksum") as pool:
        try:
            # the checksum reads the run's file while the copy and the tables are made (two cores: at
            # 1M profiles, 5 GB, a 20 s pass beside a 13 s copy); the copy holds the same bytes
            compact = settle(work / PAGES_SQLITE)
            checksum_of = pool.submit(pages_checksum, work / PAGES_SQLITE)
            writer.copy_pages(work / PAGES_SQLITE, compact)
            shutil.copyfile(work / FALLBACK, writer.staging / FALLBACK)
            if (work / SIMILAR).is_file():  # runs before the similar-titles table have none: no streamed BYW row
                shutil.copyfile(work / SIMILAR, writer.staging / SIMILAR)
            writer.write_table(TITLES, world[0])
            writer.write_table(PROFILES, world[1])
            write_profiles(writer.staging / PAGES_SQLITE, *profile_rows(world[1], config.publish.write_block))
            checksum = checksum_of.result()
            store_info: dict[str, Any] = {"backend": "sqlite", "file": PAGES_SQLITE}
            if page_store_backend(config) == "redis":
                redis_store, store_info = _write_redis(config, version, writer.staging / PAGES_SQLITE)
            live = writer.publish(manifest_for(ctx, checksum, store_info))
        except BaseException:
            writer.abort()
            raise
    pruned_redis: list[str] = []
    if redis_store is not None:
        redis_store.activate(version)
        keep = config.pipeline.keep_snapshots
        pruned_redis = redis_store.prune(keep, config.publish.retention_days * 86_400)
    removed = prune(root, keep=config.pipeline.keep_snapshots)
    runs = prune_runs(config.runs_dir, config.publish.keep_runs, keep=referenced_runs(ctx))
    raw = prune_raw(config)
    try:
        models = prune_model_versions(config)
    except Exception as exc:  # noqa: BLE001 - retention must not fail a published night
        log.warning("model versions not pruned: %s", exc)
        models = []
    return {"version": version, "path": str(live), "pages_sha256": checksum, "page_store": store_info["backend"],
            "pruned": len(removed), "pruned_redis": len(pruned_redis), "pruned_runs": len(runs),
            "pruned_raw_files": len(raw), "pruned_model_versions": len(models)}


def prune_raw(config: PathwaysConfig, now: float | None = None) -> list[str]:
    """Delete raw API event files (``raw/api/**.parquet``) that the ingest recorded as ingested
    (same size and modification time) and that are older than ``publish.raw_retention_days``."""
    import json
    import time

    from features.ingest_nightly import STATE_FILE

    state_path = config.lake_dir / STATE_FILE
    api = config.raw_dir / "api"
    if not state_path.is_file() or not api.is_dir():
        return []
    ingested = json.loads(state_path.read_text()).get("files", {})
    cutoff = (time.time() if now is None else now) - config.publish.raw_retention_days * 86_400
    removed = []
    for path in sorted(api.rglob("*.parquet")):
        st = path.stat()
        if ingested.get(str(path)) == f"{st.st_size}:{st.st_mtime_ns}" and st.st_mtime < cutoff:
            path.unlink()
            removed.append(str(path))
    return removed


def prune_model_versions(config: PathwaysConfig, now: float | None = None, names: set[str] | None = None) -> list[str]:
    """Delete registered model versions beyond the newest ``publish.keep_model_versions`` of each
    model (of ``names``, default all) that carry no alias and are older than ``publish.retention_days``;
    returns "name/version"."""
    import time

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=config.mlflow_uri, registry_uri=config.mlflow_uri)  # no global state
    cutoff_ms = ((time.time() if now is None else now) - config.publish.retention_days * 86_400) * 1000
    removed = []
    for model in client.search_registered_models():
        if names is not None and model.name not in names:
            continue
        aliased = {str(v) for v in (client.get_registered_model(model.name).aliases or {}).values()}
        versions = sorted(client.search_model_versions(f"name='{model.name}'"), key=lambda v: int(v.version), reverse=True)
        for v in versions[config.publish.keep_model_versions:]:
            if str(v.version) not in aliased and v.creation_timestamp < cutoff_ms:
                client.delete_model_version(model.name, v.version)
                removed.append(f"{model.name}/{v.version}")
    return removed


def prune_runs(runs_dir: Path, keep_n: int, keep: set[str]) -> list[str]:
    """Remove run folders beyond the newest ``keep_n`` (by last change), never those in ``keep``
    (the running one and those whose models it reuses)."""
    if not runs_dir.is_dir():
        return []
    runs = sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in runs[keep_n:] if p.name not in keep]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in stale]


def list_snapshots(config: PathwaysConfig) -> list[dict[str, Any]]:
    """One summary per published snapshot, oldest first: version, live, counts, models, code, store."""
    from pathways.snapshot import current_version, list_versions

    root = config.snapshots_dir
    live = current_version(root)
    out = []
    for version in list_versions(root):
        try:
            m = read_manifest(root / version)
        except Exception as exc:  # noqa: BLE001 - listed, marked unreadable
            out.append({"version": version, "live": version == live, "error": str(exc)})
            continue
        out.append({
            "version": version, "live": version == live, "published_at": m.get("published_at"),
            "run_id": m.get("run_id"), "counts": m.get("counts", {}), "data_window": m.get("data_window"),
            "models": m.get("models", {}), "code": m.get("code", {}),
            "page_store": (m.get("page_store") or {}).get("backend", "parquet"), "pages_sha256": m.get("pages_sha256"),
        })
    return out


def rollback(config: PathwaysConfig, version: str | None = None) -> str:
    """Switch serving back to ``version`` (default: the one published before the live one): the
    ``CURRENT`` file and, for a Redis snapshot, the Redis pointer. Returns the version now live."""
    from pathways.snapshot import SnapshotError, current_version, list_versions, previous_version, switch_current

    root = config.snapshots_dir
    versions = list_versions(root)
    live = current_version(root)
    if version is None:
        version = previous_version(versions, live)
        if version is None:
            raise SnapshotError(f"no snapshot older than the live one ({live}) to roll back to")
    if version not in versions:
        raise SnapshotError(f"no snapshot {version} under {root}; published: {', '.join(versions) or 'none'}")
    store = read_manifest(root / version).get("page_store") or {}
    if store.get("backend") == "redis":
        redis_store = RedisPageStore.from_url(redis_url(config) if config.publish.redis_url else store["url"],
                                              store["prefix"], timeout_s=5.0)
        redis_store.activate(version)  # refused unless that version is still complete in Redis
    switch_current(root, version)
    return version
