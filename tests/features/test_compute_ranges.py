"""The features stage by profile range equals the in-memory computation, and the chunked writer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import features.lake_scan as lake_scan
from features.compute import FeatureFrames, compute_features, day_end
from features.compute_ranges import _ColumnTotals, compute_features_by_range
from features.ingest import read_events
from features.lake_index import write_partitioned
from features.offline_writer import FeatureTableWriter
from features.store import BATCH_VIEWS, FeatureStoreManager
from pathways.config import FeatureConfig
from world.generator import generate_world
from world.sizes import preset

FRAMES = ("profiles", "titles", "title_regions")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table, pa.Table]:
    config = preset("tiny").model_copy(update={"n_titles": 80, "n_accounts": 60, "days": 12})
    generated = generate_world(config)  # ~150 profiles, ~15k events
    lake_dir = tmp_path_factory.mktemp("lake")
    events = generated.events
    third = events.num_rows // 3
    for i, lo in enumerate((0, third, 2 * third)):  # three batches, each split by day: many files
        write_partitioned(events.slice(lo, third if i < 2 else None), lake_dir, f"b{i}")
    return lake_dir, generated.titles, generated.profiles


def _by_range(lake_dir: Path, titles: pa.Table, profiles: pa.Table, work: Path, shard: int, block: int,
              **kw) -> dict[str, pd.DataFrame]:
    parts: dict[str, list[pa.Table]] = {}
    compute_features_by_range(lake_dir, titles, profiles, lambda name, t: parts.setdefault(name, []).append(t),
                              work, shard, block, **kw)
    return {name: pa.concat_tables(tables).to_pandas() for name, tables in parts.items()}


def _assert_same(whole: pd.DataFrame, got: pd.DataFrame) -> None:
    assert list(got.columns) == list(whole.columns) and len(got) == len(whole) > 0
    for col in whole.columns:
        if col == "genre_affinity":  # bit-equal vectors
            assert np.array_equal(np.stack(whole[col]), np.stack(got[col]))
        else:
            pd.testing.assert_series_equal(got[col], whole[col], check_exact=True)


@pytest.mark.parametrize(("shard", "block"), [(10_000, 10_000), (10_000, 37), (40, 15)])
def test_by_range_equals_the_whole_lake_computation(world, tmp_path, monkeypatch, shard, block) -> None:
    lake_dir, titles, profiles = world
    monkeypatch.setattr(lake_scan, "BATCH_ROWS", 397)  # many lake batches: the trending sums' order matters
    config = FeatureConfig(trending_half_life_days=2.0, recency_half_life_days=5.0)
    whole = compute_features(read_events(lake_dir), titles, profiles, config=config)
    got = _by_range(lake_dir, titles, profiles, tmp_path / "shards", shard, block, config=config)
    for name in FRAMES:
        _assert_same(getattr(whole, name), got[name])
    assert not list((tmp_path / "shards").glob("*.parquet"))  # shards deleted when done


def test_by_range_on_one_day_and_on_chosen_days(world, tmp_path) -> None:
    lake_dir, titles, profiles = world
    events = read_events(lake_dir)
    first = pc.min(events["ts"]).as_py().date()
    for days in ([first + timedelta(days=3)], [first + timedelta(days=2), first + timedelta(days=9)]):
        whole = compute_features(events, titles, profiles, days)
        got = _by_range(lake_dir, titles, profiles, tmp_path / "s", 40, 15, as_of_days=days)
        for name in FRAMES:
            _assert_same(getattr(whole, name), got[name])


def test_a_day_row_uses_only_events_before_its_cutoff(world, tmp_path) -> None:
    """The rows of days up to D are the same whether or not the lake holds events after D's end."""
    lake_dir, titles, profiles = world
    events = read_events(lake_dir)
    first = pc.min(events["ts"]).as_py().date()
    days = [first + timedelta(days=d) for d in range(10)]
    cutoff = pd.Timestamp(day_end(days[4]))
    early = tmp_path / "early"
    write_partitioned(events.filter(pc.less(events["ts"], cutoff)), early, "b0")
    full = _by_range(lake_dir, titles, profiles, tmp_path / "s1", 40, 15, as_of_days=days)
    past = _by_range(early, titles, profiles, tmp_path / "s2", 40, 15, as_of_days=days[:5])
    for name in FRAMES:
        upto = full[name][full[name]["event_timestamp"] <= cutoff].reset_index(drop=True)
        assert len(upto) < len(full[name])
        _assert_same(upto, past[name])


def test_column_totals_equal_one_sum_over_the_stacked_rows() -> None:
    rng = np.random.default_rng(3)
    for days in (1, 2, 7):
        blocks = [rng.random((n, days)) * 10 for n in (5, 0, 17, 1, 40)]
        totals = _ColumnTotals()
        for b in blocks:
            totals.add({"rate": (b, b * 3)})
        k, n = totals.totals()["rate"]
        stacked = np.concatenate(blocks)
        assert np.array_equal(k, stacked.sum(axis=0)) and np.array_equal(n, (stacked * 3).sum(axis=0))


def test_empty_lake_is_an_error(world, tmp_path) -> None:
    _, titles, profiles = world
    (tmp_path / "lake" / "events").mkdir(parents=True)
    with pytest.raises(ValueError, match="the lake holds no accepted events"):
        _by_range(tmp_path / "lake", titles, profiles, tmp_path / "s", 50, 20)


def test_chunked_writer_equals_write_features(world, tmp_path) -> None:
    lake_dir, titles, profiles = world
    frames = compute_features(read_events(lake_dir), titles, profiles)
    whole = FeatureStoreManager(FeatureConfig(), tmp_path / "whole")
    whole.write_features(frames)
    chunked = FeatureStoreManager(FeatureConfig(), tmp_path / "chunked")
    with chunked.feature_writer() as writer:
        compute_features_by_range(lake_dir, titles, profiles, writer.append, tmp_path / "s", 40, 15)
        assert not (chunked.data_dir / "profile_stats.parquet").exists()  # nothing in place before commit
        writer.commit(frames.genres)
    assert pq.ParquetFile(chunked.data_dir / "profile_stats.parquet").metadata.num_row_groups > 1
    for view in BATCH_VIEWS.values():
        a, b = pq.read_table(whole.data_dir / f"{view}.parquet"), pq.read_table(chunked.data_dir / f"{view}.parquet")
        assert b.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
        assert a.equals(b) and a.schema.types == b.schema.types
    assert chunked.genres() == whole.genres() == frames.genres


def test_a_failed_write_keeps_the_previous_files(world, tmp_path) -> None:
    lake_dir, titles, profiles = world
    frames: FeatureFrames = compute_features(read_events(lake_dir), titles, profiles)
    manager = FeatureStoreManager(FeatureConfig(), tmp_path / "repo")
    manager.write_features(frames)
    before = pq.read_table(manager.data_dir / "title_stats.parquet")
    with pytest.raises(RuntimeError, match="boom"), manager.feature_writer() as writer:
        writer.append("titles", before.slice(0, 3))
        raise RuntimeError("boom")
    assert pq.read_table(manager.data_dir / "title_stats.parquet").equals(before)
    assert not list(manager.data_dir.glob("*.tmp"))
    missing = r"no table was written for \['profiles', 'title_regions'\]"
    with pytest.raises(ValueError, match=missing), FeatureTableWriter(manager.data_dir, BATCH_VIEWS) as writer:
        writer.append("titles", before)
        writer.commit(frames.genres)
    with pytest.raises(ValueError, match="unknown feature frame 'pages'"):
        FeatureTableWriter(manager.data_dir, BATCH_VIEWS).append("pages", before)
