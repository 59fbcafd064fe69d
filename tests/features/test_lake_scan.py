"""Bounded lake reads: projected scans and the per-profile-range split equal whole-lake results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import features.lake_scan as lake_scan
from features.history import histories_by_range, playback_states, profile_histories
from features.ingest import read_events
from features.lake_index import write_partitioned
from features.lake_scan import read_lake, split_by_profile
from world.generator import generate_world
from world.sizes import preset


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    world = generate_world(preset("small"))
    lake_dir = tmp_path_factory.mktemp("lake")
    events = world.events
    third = events.num_rows // 3
    for i, lo in enumerate((0, third, 2 * third)):  # three batches, each split by day: many files
        write_partitioned(events.slice(lo, third if i < 2 else None), lake_dir, f"b{i}")
    return lake_dir, world.titles


def test_read_lake_projects_and_filters_like_the_whole_lake(lake, monkeypatch) -> None:
    lake_dir, _ = lake
    monkeypatch.setattr(lake_scan, "BATCH_ROWS", 997)  # many batches per file
    whole = read_events(lake_dir)
    got = read_lake(lake_dir, ["ts", "profile_id", "title_id"], ["play", "complete"])
    want = whole.filter(pc.is_in(whole["event_type"], pa.array(["play", "complete"]))).select(["ts", "profile_id", "title_id"])
    assert got.num_rows > 0 and got.equals(want)
    assert read_lake(lake_dir).num_rows == whole.num_rows
    with pytest.raises(ValueError, match="unknown event columns"):
        read_lake(lake_dir, ["nope"])


def test_split_by_profile_keeps_lake_order_and_drops_profiles_above_the_last_cut(lake, tmp_path: Path) -> None:
    lake_dir, _ = lake
    whole = read_events(lake_dir).select(["profile_id", "ts"])
    pids = np.unique(whole["profile_id"].to_numpy())
    cuts = pids[[10, 40, len(pids) // 2]]
    paths = split_by_profile(lake_dir, cuts, tmp_path, ["profile_id", "ts"])
    lo = -1
    for cut, path in zip(cuts, paths):
        want = whole.filter(pc.and_(pc.greater(whole["profile_id"], lo), pc.less_equal(whole["profile_id"], cut)))
        assert pq.read_table(path).equals(want)
        lo = cut


def test_histories_by_range_equal_the_whole_lake(lake, tmp_path: Path, monkeypatch) -> None:
    lake_dir, titles = lake
    monkeypatch.setattr(lake_scan, "BATCH_ROWS", 1511)
    whole = read_events(lake_dir)
    want_states, want_hist = playback_states(whole, titles, 0.9, 0.05), profile_histories(whole)
    pids = np.unique(whole["profile_id"].to_numpy())
    states: dict = {}
    hist: dict = {}
    last = -1
    for cut, s, h in histories_by_range(lake_dir, titles, pids, 37, tmp_path / "work", 0.9, 0.05):
        assert cut > last and all(last < p <= cut for p in (*s, *h))
        last = cut
        states |= s
        hist |= h
    assert last == pids[-1] and len(want_hist) > 100
    assert states == want_states and hist == want_hist
    assert not list((tmp_path / "work").glob("*.parquet"))  # each shard deleted once read
