"""The ingest and features CLI, through its own parser (the lead wires it into pathways.cli)."""

from __future__ import annotations

import argparse

import pyarrow.parquet as pq
import pytest

from features.cli import register
from tests.conftest import make_titles
from tests.features.builders import event, events_table, make_profiles


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture
def world_dir(tmp_path):
    world = tmp_path / "raw"
    world.mkdir()
    pq.write_table(make_titles(), world / "titles.parquet")
    pq.write_table(make_profiles(), world / "profiles.parquet")
    rows = [event(i, "play", 1 + i % 4, 100 + i % 7, 5.0 * i, fraction_watched=0.5) for i in range(20)]
    rows.append(event(99, "play", 77, 100, 1.0, fraction_watched=0.5))
    pq.write_table(events_table(rows), tmp_path / "events.parquet")
    return world


def test_ingest_prints_the_report_and_is_idempotent(tmp_path, world_dir, capsys):
    argv = ["ingest", "--events", str(tmp_path / "events.parquet"), "--world", str(world_dir), "--lake", str(tmp_path / "lake")]
    assert _run(argv) == 0
    first = capsys.readouterr().out
    assert "21 rows in, 20 accepted, 1 quarantined (unknown_profile_id=1)" in first
    assert _run(argv) == 0
    assert "already ingested" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda t: ["--events", str(t / "nope.parquet")], FileNotFoundError, "event file not found"),
        (lambda t: ["--world", str(t / "nope")], FileNotFoundError, "world folder not found"),
        (lambda t: ["--world", str(t)], FileNotFoundError, "lacks titles.parquet, profiles.parquet"),
        (lambda t: ["--lake", str(t / "events.parquet")], ValueError, "is not a folder"),
    ],
)
def test_ingest_rejects_bad_paths(tmp_path, world_dir, change, error, message):
    args = {"--events": str(tmp_path / "events.parquet"), "--world": str(world_dir), "--lake": str(tmp_path / "lake")}
    override = change(tmp_path)
    args[override[0]] = override[1]
    with pytest.raises(error, match=message):
        _run(["ingest", *[x for kv in args.items() for x in kv]])


def test_materialize_needs_a_lake(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `pathways ingest` first"):
        _run(["features", "materialize", "--data-dir", str(tmp_path)])


@pytest.mark.e2e
def test_materialize_builds_an_online_store(tmp_path, world_dir, capsys):
    _run(["ingest", "--events", str(tmp_path / "events.parquet"), "--world", str(world_dir), "--lake", str(tmp_path / "lake")])
    assert _run(["features", "materialize", "--data-dir", str(tmp_path)]) == 0
    assert "materialized to" in capsys.readouterr().out
    from features.store import FeatureStoreManager
    from pathways.config import FeatureConfig

    online = FeatureStoreManager(FeatureConfig(), tmp_path / "feature_repo").online_profiles([1, 5])
    assert online["plays_28d"].tolist() == [5, 0]  # profile 1 played 5 titles; 5 never did
