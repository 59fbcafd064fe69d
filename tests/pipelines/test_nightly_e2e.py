"""The nightly job end to end on a tiny world: real Feast, MLflow, implicit, faiss, PyTorch.

One module-scoped run (it costs tens of seconds) is shared by the checks below.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pathways.catalog import Catalog
from pathways.config import PathwaysConfig
from pathways.snapshot import current_dir, current_version, read_pages
from pathways.types import Page
from pipelines.nightly import run_nightly
from pipelines.runner import StageFailed
from ranking.rules import violations

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def nightly(tmp_path_factory, mlflow_uri):
    from world.generator import generate_to_dir
    from world.sizes import preset

    data = tmp_path_factory.mktemp("nightly")
    config = PathwaysConfig(data_dir=data).with_overrides({"training.mlflow_tracking_uri": mlflow_uri})
    world = preset("tiny", base=config.world).model_copy(update={"n_accounts": 30, "days": 21, "n_titles": 80})  # enough history for the LTR top row
    generate_to_dir(world, config.raw_dir / "world")
    ctx, results = run_nightly(config, progress=False)
    return config, ctx, results


def _spec(config, ctx):
    """The page build spec of the fixture's run (its models, lists and as-of time)."""
    from pipelines.page_builder import PageBuildSpec
    from pipelines.stages import retrieval_sources

    extra = retrieval_sources(config, Path(ctx.outputs["train_retrieval"]["dir"]))
    return PageBuildSpec(config, Path(ctx.outputs["train_als"]["path"]), datetime.fromisoformat(ctx.outputs["features"]["as_of"]),
                         extra, Path(ctx.outputs["train_top_row"]["path"]))


def _pages(config):
    """The live snapshot's dir and its (profile_id, cell, rows as ``CompactRows``) from ``pages.sqlite``."""
    snap = current_dir(config.snapshots_dir)
    return snap, [(pid, stored.cell, stored.rows) for pid, stored in read_pages(snap)]


def test_every_stage_ran_and_events_balance(nightly):
    config, ctx, results = nightly
    assert [r.name for r in results][-1] == "publish"
    ing = ctx.outputs["ingest"]
    assert ing["rows_in"] == ing["accepted"] + ing["quarantined"] and ing["accepted"] > 0
    assert current_version(config.snapshots_dir) == ctx.outputs["publish"]["version"]


def test_published_pages_respect_every_hard_rule(nightly):
    config, _, _ = nightly
    snap, pages = _pages(config)
    catalog = Catalog.from_table(pq.read_table(snap / "titles.parquet"))
    profiles = {p["profile_id"]: p for p in pq.read_table(snap / "profiles.parquet").to_pylist()}
    assert len(pages) == len(profiles)
    personalized_rows = 0
    for pid, cell, rows in pages:
        prof = profiles[pid]
        ids = rows.title_ids.tolist()
        assert violations(catalog, ids, prof["region"], prof["max_maturity_level"]) == []
        top = [int(t) for r in rows.ids_per_row()[:10] for t in r]
        assert len(top) == len(set(top))
        assert cell in config.experiment.cells
        assert all(h.evidence for h in rows.headers)
        personalized_rows += len(rows)
    assert personalized_rows > 0
    sources = {h.source for _, _, rows in pages for h in rows.headers}
    assert {"trending", "genre"} <= sources
    assert sources & {"als", "two_tower", "sasrec", "because_you_watched"}, sources
    # The learning-to-rank top row leads every page that has one (after continue watching).
    with_top = [rows for _, _, rows in pages if any(h.source == "top_picks" for h in rows.headers)]
    assert with_top
    for rows in with_top:
        lead = [h.source for h in rows.headers if h.source in ("continue_watching", "top_picks")]
        assert [h.source for h in rows.headers[: len(lead)]] == lead and lead[-1] == "top_picks"
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["counts"]["profiles"] == len(pages) and manifest["pages_sha256"]
    assert manifest["models"]["train_ranker"]["champion_version"] and manifest["data_window"]["end"]
    assert "ranker_v1" in manifest["features"]["services"] and "git_sha" in manifest["code"]
    fallback = pq.read_table(snap / "fallback.parquet").to_pylist()
    assert {(r["region"], r["max_maturity_level"]) for r in fallback} >= {("US", 1), ("BR", 4)}
    for r in fallback:
        page = Page.from_dict(json.loads(r["page_json"]))
        assert page.personalized is False and page.reason
        ids = [t.title_id for row in page.rows for t in row.titles]
        assert violations(catalog, ids, r["region"], r["max_maturity_level"]) == []


def test_rerun_is_idempotent_and_a_failed_run_keeps_the_live_snapshot(nightly, monkeypatch):
    config, ctx, _ = nightly
    live = current_version(config.snapshots_dir)
    _, again = run_nightly(config, progress=False)
    assert all(r.skipped for r in again)  # same inputs: nothing redone, nothing republished
    assert current_version(config.snapshots_dir) == live

    # New input (events through the API) -> a new run; it dies while assembling pages.
    api = config.raw_dir / "api"
    api.mkdir(parents=True, exist_ok=True)
    events = pq.read_table(config.raw_dir / "world" / "events.parquet")
    pq.write_table(events.slice(0, 5), api / "batch-1.parquet")  # duplicates: quarantined, not lost

    import pipelines.page_builder as page_builder

    def boom(*args, **kwargs):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(page_builder, "assemble_page", boom)
    with pytest.raises(StageFailed, match="pages"):
        run_nightly(config, progress=False)
    assert current_version(config.snapshots_dir) == live
    monkeypatch.undo()
    ctx2, results = run_nightly(config, progress=False)
    ran = {r.name for r in results if not r.skipped}
    assert "ingest" not in ran and {"pages", "publish"} <= ran  # resumed where it failed
    assert ctx2.outputs["ingest"]["quarantined"] >= 5
    assert current_version(config.snapshots_dir) != live


def test_ray_executor_builds_the_same_pages_as_the_local_one(nightly):
    """Parity: the pages stage on Ray actors equals the in-process one, profile for profile."""
    import dataclasses

    import ray

    from pipelines.page_builder import build_pages
    from pipelines.stages import _profile_contexts

    config, ctx, _ = nightly
    profiles = _profile_contexts(ctx)
    spec = _spec(config, ctx)
    local: list = []
    local_fb = build_pages(spec, [profiles], local.extend, progress=False)
    ray_cfg = config.with_overrides({"pipeline.executor": "ray", "pipeline.workers": 1, "pipeline.chunk_size": 7})
    import tempfile

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="pw-", dir="/tmp"))  # AF_UNIX socket paths <= 107 bytes
    remote: list = []
    try:
        blocks = [profiles[i : i + 7] for i in range(0, len(profiles), 7)]
        remote_fb = build_pages(dataclasses.replace(spec, config=ray_cfg), blocks, remote.extend, progress=False)
    finally:
        ray.shutdown()
    assert sorted(remote) == sorted(local) and len(local) == len(profiles)
    assert remote_fb == local_fb


def test_block_path_builds_the_pages_of_the_per_profile_loop(nightly):
    """Parity: candidates, scores and rows per block are the per-profile loop's, byte for byte."""
    import dataclasses

    from pipelines.page_builder import PageBuilder
    from pipelines.stages import _profile_contexts

    config, ctx, _ = nightly
    spec = _spec(config, ctx)
    builder = PageBuilder.open(spec)
    profiles = _profile_contexts(ctx)
    block = [page for i in range(0, len(profiles), 16) for page in builder.build(profiles[i : i + 16])]
    assert block == builder.build_loop(profiles)
    assert sum(page.n_rows for page in block) > len(profiles)
    # The challenger's trees ran compiled; scikit-learn's own walk gives the same pages.
    gbdt = [s.ranker for s in builder.scorers.values() if s.ranker.kind == "gbdt"]
    assert gbdt and all(r.compiled is not None for r in gbdt)
    assert any(p.cell == "challenger" for p in profiles)
    plain = PageBuilder.open(dataclasses.replace(spec, config=config.with_overrides({"pipeline.compile_trees": False})))
    assert all(s.ranker.compiled is None for s in plain.scorers.values())
    assert [page for i in range(0, len(profiles), 16) for page in plain.build(profiles[i : i + 16])] == block


def test_profiles_nothing_tells_apart_share_a_page_and_only_they_do(nightly, monkeypatch):
    """A block's profiles without history, without vectors, lists or features of their own and of one
    context take one page (built once), the per-profile loop's page for each; a profile of that
    context with data of its own (vectors, a top list, features: a player's id, its history left out)
    gets its own."""
    from dataclasses import replace

    from pipelines.page_builder import PageBuilder
    from pipelines.stages import _profile_contexts

    config, ctx, _ = nightly
    builder = PageBuilder.open(_spec(config, ctx))
    players = [p for p in _profile_contexts(ctx) if p.history][:12]
    blank = {"history": (), "finished": frozenset(), "in_progress": {}, "in_progress_ts": {}}
    newcomers = [replace(p, profile_id=10**9 + k, **blank) for k, p in enumerate(players * 2)]  # two of each context
    stripped = [replace(p, **blank) for p in players]  # the players' own ids: their vectors, lists and features
    profiles = [x for pair in zip(newcomers[:12], stripped, newcomers[12:]) for x in pair]
    own, of = builder.interchangeable(profiles)
    assert set(own.tolist()) >= {3 * k + 1 for k in range(12)}  # every stripped player builds its own page
    for k in range(12):  # the second newcomer of a context takes an earlier newcomer's page of that context
        first = profiles[own[of[3 * k + 2]]]
        assert own[of[3 * k + 2]] < 3 * k + 2 and first.profile_id >= 10**9
        assert replace(first, profile_id=0, account_id=0) == replace(profiles[3 * k + 2], profile_id=0, account_id=0)
    mine = {3 * k + 1 for k in range(12)}
    monkeypatch.setattr("ranking.block_rank.profile_keys", lambda scorer, profiles, index, read=None: [b""] * len(index))
    assert set(builder.interchangeable(profiles)[0].tolist()) >= mine  # features aside: their vectors and lists
    monkeypatch.undo()
    monkeypatch.setattr("candidates.base.holds", lambda source, ids: np.zeros(len(ids), bool))
    monkeypatch.setattr("pathways.artifacts.top_lists.flat_lists", lambda lists, ids: (np.zeros(len(ids) + 1, np.int64), None, None))
    assert set(builder.interchangeable(profiles)[0].tolist()) >= mine  # vectors and lists aside: their features
    monkeypatch.undo()
    pages = builder.build(profiles)
    assert pages == builder.build_loop(profiles)
    assert [p.profile_id for p in pages] == [p.profile_id for p in profiles]
    assert any(pages[3 * k].blob != pages[3 * k + 1].blob for k in range(12))  # a player's data shows on its page


def test_a_pages_stage_killed_mid_way_resumes_to_the_same_pages(nightly, monkeypatch, tmp_path):
    """Killed after some blocks were committed, the resumed stage ends with the checksum of an
    uninterrupted build of the same run."""
    import dataclasses

    import ranking.block_page as block_page
    from pathways.snapshot import pages_checksum
    from pipelines import stages

    config, ctx, _ = nightly
    small = config.with_overrides({"pipeline.chunk_size": 5, "pipeline.threads": 1})  # one thread: the 3rd call is the 3rd block
    fresh = dataclasses.replace(ctx, config=small, run_dir=tmp_path / "fresh", cache={}, resume=False)
    expected = stages.pages(fresh)
    killed = dataclasses.replace(ctx, config=small, run_dir=tmp_path / "killed", cache={}, resume=True)
    real, calls = block_page.choose_block, [0]

    def dies_in_the_3rd_block(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(block_page, "choose_block", dies_in_the_3rd_block)
    with pytest.raises(RuntimeError, match="killed"):
        stages.pages(killed)
    monkeypatch.undo()
    leftover = killed.run_dir / f"{stages.HISTORIES_PREFIX}sigkilled"  # a SIGKILL runs no finally: its shards stay
    leftover.mkdir()
    (leftover / "shard-0.parquet").write_bytes(b"history shard of a killed attempt")
    resumed = stages.pages(killed)
    assert resumed["resumed_profiles"] == 10  # two blocks of 5 were committed before the kill
    assert not list(killed.run_dir.glob(f"{stages.HISTORIES_PREFIX}*"))  # the resume removed them, and its own
    assert {k: resumed[k] for k in ("profiles", "rows", "empty_pages")} == {k: expected[k] for k in ("profiles", "rows", "empty_pages")}
    sqlite = "pages.sqlite"
    assert pages_checksum(Path(resumed["dir"]) / sqlite) == pages_checksum(Path(expected["dir"]) / sqlite)
    # --no-resume redoes the whole stage: a stale plays extract of an earlier attempt is not read.
    (Path(expected["dir"]) / "plays.parquet").write_bytes(b"left over from a killed attempt")
    again = stages.pages(fresh)
    assert pages_checksum(Path(again["dir"]) / sqlite) == pages_checksum(Path(expected["dir"]) / sqlite)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_over_http_rules_heartbeats_and_fallbacks(nightly):
    """Nightly output served by the real Ray Serve app with the real Feast online store."""
    import random

    import httpx

    from features.schema import KIDS_MAX_MATURITY
    from serving import deployment

    config, ctx, _ = nightly
    snap, pages = _pages(config)
    catalog = Catalog.from_table(pq.read_table(snap / "titles.parquet"))
    profiles = {p["profile_id"]: p for p in pq.read_table(snap / "profiles.parquet").to_pylist()}
    import tempfile

    from pathways import tracking

    # Promote tonight's artwork candidate (on a tiny log it rarely clears the OPE bar by itself).
    tracking.configure(config.mlflow_uri)
    tracking.set_alias("artwork_policy", tracking.CHAMPION, ctx.outputs["artwork"]["candidate_version"])
    from serving.access import dev_token, with_service

    config = with_service(config, "e2e-backend")  # a service token: any profile
    token = dev_token(config, "e2e-backend", ["pages:read", "events:write"])
    base = deployment.start(config, port=_free_port(), temp_dir=tempfile.mkdtemp(prefix="pw-", dir="/tmp"))  # AF_UNIX paths <= 107 bytes
    try:
        with httpx.Client(base_url=base, timeout=30.0, headers={"Authorization": f"Bearer {token}"}) as client:
            rng = random.Random(0)
            known = sorted(profiles)
            kids = [p for p in known if profiles[p]["is_kids"]]
            ids = [rng.choice(known) for _ in range(150)] + kids[:20] + [10**9 + i for i in range(30)]
            personalized = 0
            for pid in ids:
                r = client.get("/api/v1/pathways", params={"profile_id": pid, "row_count": 40})
                assert r.status_code == 200, r.text
                page = r.json()
                prof = profiles.get(pid, {"region": config.serving.default_region, "max_maturity_level": KIDS_MAX_MATURITY})
                assert page["profile"]["max_maturity_level"] <= prof["max_maturity_level"]
                titles = [t for row in page["rows"] for t in row["titles"]]
                assert violations(catalog, [t["title_id"] for t in titles], prof["region"], prof["max_maturity_level"]) == []
                assert all(t["maturity_level"] <= page["profile"]["max_maturity_level"] for t in titles)
                top = [t["title_id"] for row in page["rows"][:10] for t in row["titles"]]
                assert len(top) == len(set(top))
                assert page["personalized"] is (pid in profiles) or page["reason"]
                personalized += page["personalized"]
            assert personalized >= 100

            # Artwork: the promoted policy picks a variant per title, with a propensity in (0, 1].
            page = client.get("/api/v1/pathways", params={"profile_id": known[0]}).json()
            cards = [t for row in page["rows"] for t in row["titles"]]
            assert cards and all(0.0 < t["artwork_propensity"] <= 1.0 for t in cards)
            assert page["artwork_policy"] != "default"  # the policy promoted above, not the fallback
            assert any(t["artwork_propensity"] < 1.0 for t in cards)  # it explores

            # A heartbeat shows up first in continue watching; finishing removes the title everywhere.
            adult = next(p for p in known if not profiles[p]["is_kids"] and profiles[p]["region"] == "US") if any(
                not profiles[p]["is_kids"] and profiles[p]["region"] == "US" for p in known) else next(
                p for p in known if not profiles[p]["is_kids"])
            page = client.get("/api/v1/pathways", params={"profile_id": adult}).json()
            shown = {t["title_id"] for row in page["rows"] for t in row["titles"]}
            title = next(int(t) for t in catalog.title_ids if int(t) in shown)
            runtime_s = 60 * pq.read_table(snap / "titles.parquet").to_pandas().set_index("title_id").loc[title, "runtime_min"]
            beat = {"profile_id": adult, "title_id": title, "position_s": float(0.4 * runtime_s)}
            assert client.put("/api/v1/playback/e2e-1/heartbeat", json=beat).status_code in (200, 202)
            page = client.get("/api/v1/pathways", params={"profile_id": adult}).json()
            assert page["rows"][0]["source"] == "continue_watching"
            assert page["rows"][0]["titles"][0]["title_id"] == title
            beat["position_s"] = float(0.99 * runtime_s)
            assert client.put("/api/v1/playback/e2e-1/heartbeat", json=beat).status_code in (200, 202)
            page = client.get("/api/v1/pathways", params={"profile_id": adult}).json()
            assert title not in {t["title_id"] for row in page["rows"] for t in row["titles"]}
            assert client.get("/api/v1/pathways", params={"profile_id": adult, "row_count": 0}).status_code in (400, 422)

            # The online store goes away: the precomputed page, rows marked degraded, never a 5xx.
            online_db = config.feature_repo_dir / "online.db"
            online_db.rename(online_db.with_suffix(".gone"))
            page = client.get("/api/v1/pathways", params={"profile_id": adult})
            assert page.status_code == 200 and page.json()["personalized"] is True
            assert "online store" in page.json()["reason"] and page.json()["degraded"]
            online_db.with_suffix(".gone").rename(online_db)

            # The published snapshot's files go away: the replica keeps serving the copy it has open
            # (still personalized), and /healthz says the snapshot is detached from the disk.
            import shutil
            import time

            shutil.rmtree(snap)
            deadline = time.monotonic() + 10 * config.serving.snapshot_poll_s  # serving polls CURRENT
            while True:
                health = client.get("/healthz")
                if "removed" in health.text or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert health.status_code == 200 and "removed" in health.text, health.text
            page = client.get("/api/v1/pathways", params={"profile_id": adult})
            assert page.status_code == 200 and page.json()["personalized"] is True and page.json()["rows"]
    finally:
        deployment.stop()


def test_pages_on_a_two_node_ray_cluster_equal_the_local_ones(nightly, tmp_path):
    """`pathways nightly --address ...`'s pages stage on a Ray cluster of two nodes (one CPU each,
    started here, stopped by pid): the same pages, checksum for checksum, as in-process."""
    import dataclasses
    import os
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    import ray

    from pathways.snapshot import pages_checksum
    from pipelines import stages

    config, ctx, _ = nightly
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    cli = str(Path(sys.executable).parent / "ray")
    short = tempfile.mkdtemp(prefix="pw-", dir="/tmp")  # AF_UNIX socket paths <= 107 bytes
    head = subprocess.Popen([cli, "start", "--head", "--port", str(port), "--num-cpus", "1", "--include-dashboard",
                             "false", "--temp-dir", short, "--block", "--disable-usage-stats"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = None
    try:
        time.sleep(5)
        node = subprocess.Popen([cli, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--block",
                                 "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            try:
                ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
                alive = len([n for n in ray.nodes() if n["Alive"]])
            except Exception:  # noqa: BLE001 - the head is still starting
                alive = 0
            finally:
                ray.shutdown()
            if alive == 2 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert alive == 2
        on_ray = config.with_overrides({"pipeline.executor": "ray", "pipeline.ray_address": f"127.0.0.1:{port}",
                                        "pipeline.workers": 2, "pipeline.chunk_size": 9})
        remote = stages.pages(dataclasses.replace(ctx, config=on_ray, run_dir=tmp_path / "ray", cache={}, resume=False))
    finally:
        for proc in (node, head):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
    local = stages.pages(dataclasses.replace(ctx, run_dir=tmp_path / "local", cache={}, resume=False))
    assert remote["executor"] == "ray" and remote["profiles"] == local["profiles"]
    assert pages_checksum(Path(remote["dir"]) / "pages.sqlite") == pages_checksum(Path(local["dir"]) / "pages.sqlite")
