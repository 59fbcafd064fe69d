"""Publishing: the checks against the live snapshot, the manifest, rollback (files and Redis), the
nightly lock, retention of run folders, and `pathways snapshots` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathways.config import PathwaysConfig
from pathways.pageblob import encode_page
from pathways.profilerecords import read_profiles
from pathways.snapshot import FALLBACK, SnapshotError, current_version, fallback_table, read_manifest
from pipelines import publish as pub
from pipelines.nightly import NightlyLocked, nightly_lock
from pipelines.runner import RunContext
from tests.redis_server import needs_redis, redis_port  # noqa: F401 - fixture
from tests.serving.snapshot_fixtures import profiles_table, stored_page, titles_table


def _config(tmp_path: Path, **overrides) -> PathwaysConfig:
    return PathwaysConfig(data_dir=tmp_path / "data").with_overrides(overrides)


def _run(config: PathwaysConfig, run_id: str, n_pages: int, n_empty: int = 0) -> RunContext:
    """A run whose pages stage is done: ``n_pages`` pages (the first ``n_empty`` without rows)."""
    from pathways.pagestore import SqlitePageStore

    work = config.runs_dir / run_id / "pages"
    work.mkdir(parents=True)
    writer = SqlitePageStore().writer(work, resumable=True)
    pages = [(pid, encode_page("control", stored_page(pid, "US", 4, n_rows=0 if pid <= n_empty else 3)))
             for pid in range(1, n_pages + 1)]
    writer.put_many(pages)
    writer.close()
    import pyarrow.parquet as pq

    pq.write_table(fallback_table({("US", 4): stored_page(None, "US", 4)}), work / FALLBACK)
    counts = pub.page_counts(work / "pages.sqlite")
    outputs = {
        "features": {"as_of": "2026-10-28T23:59:51+00:00"},
        "train_ranker": {"impressions": 10, "champion_version": "3", "challenger_version": "4", "champion_auc": 0.7},
        "train_als": {"model_uri": "models:/m-1", "version": 2, "path": "/x", "nnz": 5},
        "pages": {**counts, "fallback_pages": 1, "dir": str(work), "window_start": "a", "window_end": "b"},
    }
    return RunContext(config, run_id, config.runs_dir / run_id, outputs, progress=False)


@pytest.fixture(autouse=True)
def _no_feast(monkeypatch, request):
    monkeypatch.setattr(pub, "_feature_services", lambda ctx: {"project": "p", "services": ["ranker_v1"]})
    if "model_versions" not in request.node.name:  # no MLflow database per test (migrations cost seconds)
        monkeypatch.setattr(pub, "prune_model_versions", lambda config, now=None, names=None: [])


def _publish(ctx: RunContext) -> dict:
    return pub.publish_run(ctx, (titles_table(), profiles_table()))


def test_publish_writes_pages_and_a_traceable_manifest(tmp_path):
    config = _config(tmp_path)
    ctx = _run(config, "r1", 20, n_empty=2)
    out = _publish(ctx)
    snap = config.snapshots_dir / out["version"]
    manifest = read_manifest(snap)
    assert current_version(config.snapshots_dir) == out["version"] and (snap / "pages.sqlite").is_file()
    assert manifest["counts"] == {"profiles": 20, "rows": 54, "empty_pages": 2, "fallback_pages": 1}
    assert manifest["pages_sha256"] == out["pages_sha256"] and manifest["page_store"]["backend"] == "sqlite"
    assert manifest["models"]["train_ranker"] == {"champion_version": "3", "challenger_version": "4"}
    assert manifest["models"]["train_als"] == {"model_uri": "models:/m-1", "version": 2}
    assert manifest["data_window"] == {"start": "a", "end": "b"} and manifest["run_id"] == "r1"
    assert set(manifest["code"]) == {"git_sha", "dirty"}
    regions, blocks = read_profiles(snap / "pages.sqlite")  # serving's profile records, beside the pages
    records = {pid: (regions[code], level, kids, account) for b in blocks for pid, code, level, kids, account in b}
    assert records == {r["profile_id"]: (r["region"], r["max_maturity_level"], r["is_kids"], r["account_id"])
                       for r in profiles_table().to_pylist()}


@pytest.mark.parametrize(
    ("n_pages", "n_empty", "message"),
    [
        (20, 0, None),  # the same as live
        (29, 0, None),  # +45%: within the 50% default
        (31, 0, "page count 31 is 55% off the live snapshot's 20"),
        (9, 0, "page count 9 is 55% off"),
        (20, 1, None),  # 5% empty: just within +5 points
        (20, 3, "empty pages 15.0% against the live snapshot's 0.0%"),
    ],
)
def test_a_snapshot_too_far_off_the_live_one_is_refused(tmp_path, n_pages, n_empty, message):
    config = _config(tmp_path)
    live = _publish(_run(config, "r1", 20))["version"]
    ctx = _run(config, "r2", n_pages, n_empty)
    if message is None:
        assert _publish(ctx)["version"] != live
    else:
        with pytest.raises(pub.PublishRefused, match=message):
            _publish(ctx)
        assert current_version(config.snapshots_dir) == live
        assert not list(config.snapshots_dir.glob(".staging-*"))


def test_limits_come_from_config(tmp_path):
    config = _config(tmp_path, **{"publish.max_page_count_change": 0.05})
    _publish(_run(config, "r1", 20))
    with pytest.raises(pub.PublishRefused, match="max_page_count_change = 5%"):
        _publish(_run(config, "r2", 22))


def test_rollback_and_list(tmp_path):
    config = _config(tmp_path)
    v1 = _publish(_run(config, "r1", 10))["version"]
    v2 = _publish(_run(config, "r2", 11))["version"]
    assert pub.rollback(config) == v1 and current_version(config.snapshots_dir) == v1
    with pytest.raises(SnapshotError, match="no snapshot older"):
        pub.rollback(config)
    assert pub.rollback(config, v2) == v2
    with pytest.raises(SnapshotError, match="no snapshot v0"):
        pub.rollback(config, "v0")
    listed = pub.list_snapshots(config)
    assert [r["version"] for r in listed] == [v1, v2] and [r["live"] for r in listed] == [False, True]
    assert listed[1]["counts"]["profiles"] == 11 and listed[1]["page_store"] == "sqlite"


def test_cli_lists_and_rolls_back(tmp_path, capsys):
    from pathways.cli import main

    config = _config(tmp_path)
    v1 = _publish(_run(config, "r1", 10))["version"]
    v2 = _publish(_run(config, "r2", 10))["version"]
    assert main(["snapshots", "list", "--data-dir", str(config.data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"* {v2}" in out and v1 in out
    assert main(["snapshots", "rollback", "--data-dir", str(config.data_dir)]) == 0
    assert f"serving now points at {v1}" in capsys.readouterr().out
    assert main(["snapshots", "rollback", "v0", "--data-dir", str(config.data_dir)]) == 1


def test_serving_follows_a_rollback(tmp_path):
    from serving.snapshots import SnapshotStore

    config = _config(tmp_path)
    v1 = _publish(_run(config, "r1", 10))["version"]
    v2 = _publish(_run(config, "r2", 10, n_empty=0))["version"]
    store = SnapshotStore(config.snapshots_dir, poll_s=0.0, background=False)
    assert store.refresh().snapshot.version == v2
    pub.rollback(config)
    assert store.state().snapshot.version == v1 and store.state().snapshot.page(3) is not None


def test_one_nightly_at_a_time_per_data_dir(tmp_path):
    config = _config(tmp_path)
    with nightly_lock(config), pytest.raises(NightlyLocked, match="already holds"), nightly_lock(config):
        pass
    with nightly_lock(config):  # released: the next run gets it
        pass


def test_old_run_folders_are_pruned_but_never_the_running_one(tmp_path):
    import os

    runs = tmp_path / "runs"
    for i, name in enumerate(["a", "b", "c", "d"]):
        (runs / name).mkdir(parents=True)
        os.utime(runs / name, (1000 + i, 1000 + i))
    assert sorted(pub.prune_runs(runs, 2, keep={"a"})) == ["b"]
    assert sorted(p.name for p in runs.iterdir()) == ["a", "c", "d"]


@needs_redis
@pytest.mark.e2e
def test_redis_page_store_publish_serve_and_rollback(tmp_path, redis_port):  # noqa: F811
    from serving.snapshots import SnapshotStore

    config = _config(tmp_path, **{"publish.page_store": "redis", "publish.redis_url": f"127.0.0.1:{redis_port}",
                                  "publish.redis_prefix": "t9"})
    v1 = _publish(_run(config, "r1", 10))["version"]
    v2 = _publish(_run(config, "r2", 10))["version"]
    assert read_manifest(config.snapshots_dir / v2)["page_store"]["backend"] == "redis"
    assert (config.snapshots_dir / v2 / "pages.sqlite").is_file()  # the file record stays beside Redis
    store = SnapshotStore(config.snapshots_dir, poll_s=0.0, background=False)
    snap = store.refresh().snapshot
    assert snap.version == v2 and snap.page(3).cell == "control" and snap.page(99) is None
    assert snap.profile(3).region == "BR" and snap.profile(3).account_id == 11 and snap.profile(99) is None
    assert type(snap.profiles).__name__ == "StoreProfiles"  # read from Redis, nothing per profile in memory
    redis_store = pub.RedisPageStore.from_url(f"127.0.0.1:{redis_port}", "t9", 1.0)
    assert redis_store.current() == v2 and redis_store.versions() == [v1, v2]
    pub.rollback(config)
    assert redis_store.current() == v1 and store.state().snapshot.version == v1


def test_raw_api_files_go_once_ingested_and_old(tmp_path):
    import os

    from features.ingest_nightly import STATE_FILE

    config = _config(tmp_path, **{"publish.raw_retention_days": 2.0})
    api = config.raw_dir / "api" / "2026"
    api.mkdir(parents=True)
    now = 100 * 86_400.0
    files = {name: api / f"{name}.parquet" for name in ("old", "recent", "changed", "never")}
    for path in files.values():
        path.write_bytes(b"x")
        os.utime(path, (now - 5 * 86_400, now - 5 * 86_400))
    os.utime(files["recent"], (now - 86_400, now - 86_400))
    key = {n: f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for n, p in files.items() if n != "never"}
    key["changed"] = "999:1"  # rewritten since it was ingested
    config.lake_dir.mkdir(parents=True)
    (config.lake_dir / STATE_FILE).write_text(json.dumps({"files": {str(files[n]): k for n, k in key.items()}}))
    assert pub.prune_raw(config, now=now) == [str(files["old"])]
    assert sorted(p.name for p in api.iterdir()) == ["changed.parquet", "never.parquet", "recent.parquet"]


def test_old_model_versions_without_an_alias_are_pruned(tmp_path, mlflow_uri):
    import mlflow
    from mlflow import MlflowClient

    from pathways import tracking

    config = _config(tmp_path, **{"training.mlflow_tracking_uri": mlflow_uri, "publish.keep_model_versions": 2})
    tracking.configure(mlflow_uri, "tests")
    with mlflow.start_run():
        mlflow.log_text("x", "model/MLmodel")
        uri = f"runs:/{mlflow.active_run().info.run_id}/model"
    versions = [tracking.register(uri, "prune_me", alias=None) for _ in range(5)]
    tracking.set_alias("prune_me", tracking.CHAMPION, versions[0])  # the oldest is still the champion
    assert pub.prune_model_versions(config, names={"prune_me"}) == []  # all younger than publish.retention_days
    removed = pub.prune_model_versions(config, now=__import__("time").time() + 30 * 86_400, names={"prune_me"})
    assert removed == ["prune_me/3", "prune_me/2"]
    left = sorted(int(v.version) for v in MlflowClient().search_model_versions("name='prune_me'"))
    assert left == [1, 4, 5]


@needs_redis
@pytest.mark.e2e
def test_a_snapshot_whose_redis_is_down_is_tried_again(tmp_path):
    from serving.snapshots import SnapshotStore
    from tests.redis_server import free_port, start_redis, stop_redis

    port = free_port()
    proc, _ = start_redis(tmp_path, port)
    config = _config(tmp_path, **{"publish.page_store": "redis", "publish.redis_url": f"127.0.0.1:{port}"})
    version = _publish(_run(config, "r1", 5))["version"]
    stop_redis(proc)
    store = SnapshotStore(config.snapshots_dir, poll_s=0.0, background=False)
    assert store.refresh().snapshot is None  # Redis down: nothing to serve pages from yet
    proc, _ = start_redis(tmp_path, port)
    try:
        pub._write_redis(config, version, config.snapshots_dir / version / "pages.sqlite")  # a fresh Redis
        assert store.refresh().snapshot.version == version and store.state().snapshot.page(2) is not None
    finally:
        stop_redis(proc)


def test_the_work_file_is_published_whole_and_compact(tmp_path):
    """The run's WAL work file is checkpointed and copied as bytes (its checksum is the copy's); one
    mostly free is rewritten compact; a file another connection keeps in WAL mode is refused."""
    import sqlite3

    from pathways.snapshot import SnapshotError, pages_checksum, settle

    config = _config(tmp_path)
    ctx = _run(config, "r1", 40)
    work = Path(ctx.outputs["pages"]["dir"]) / "pages.sqlite"
    other = sqlite3.connect(work, timeout=0.1)  # a reader in WAL mode: the journal cannot change under it
    other.execute("SELECT count(*) FROM pages").fetchone()
    with pytest.raises(SnapshotError, match="another connection holds it"):
        settle(work)
    other.close()
    db = sqlite3.connect(work)  # most pages deleted: their space stays free in the file
    db.execute("INSERT INTO pages VALUES (1000, zeroblob(400000))")
    db.commit()
    db.execute("DELETE FROM pages WHERE profile_id = 1000")
    db.commit()
    db.close()
    size = work.stat().st_size
    out = _publish(ctx)
    live = config.snapshots_dir / out["version"] / "pages.sqlite"
    assert sorted(p.name for p in live.parent.glob("pages.sqlite*")) == ["pages.sqlite"]  # no log beside it
    assert live.stat().st_size < size / 4  # rewritten compact, not copied
    assert pages_checksum(live) == out["pages_sha256"] == pages_checksum(work)
    with sqlite3.connect(f"file:{live}?mode=ro", uri=True) as ro:
        assert ro.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    ctx2 = _run(config, "r2", 40)  # a compact one: copied byte for byte (the profiles table added after)
    work2 = Path(ctx2.outputs["pages"]["dir"]) / "pages.sqlite"
    out2 = _publish(ctx2)
    live2 = config.snapshots_dir / out2["version"] / "pages.sqlite"
    assert pages_checksum(live2) == out2["pages_sha256"] == pages_checksum(work2) == out["pages_sha256"]
    with sqlite3.connect(work2) as db2, sqlite3.connect(live2) as copied:
        assert db2.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # settled in place
        assert db2.execute("PRAGMA page_size").fetchone() == copied.execute("PRAGMA page_size").fetchone()
