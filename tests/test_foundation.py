"""Config validation, snapshot publishing and A/B allocation."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from experiments.allocation import assign_cell, assign_cells, bucket
from pathways.config import ConfigError, ExperimentConfig, load_config, parse_override
from pathways.snapshot import (
    SnapshotError,
    SnapshotWriter,
    current_dir,
    current_version,
    list_versions,
    prune,
)
from pathways.types import Page, Row, TitleCard


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[world]\nn_titles = 3\n", "world.n_titles"),
        ("[world]\nbogus = 1\n", "world.bogus"),
        ("[serving]\nport = 70000\n", "serving.port"),
        ("[experiment]\ncells = {a = 0.5, b = 0.6}\n", "sum to 1"),
        ("[experiment]\nranker_aliases = {control = \"\"}\n", "ranker_aliases must map"),
        ("[world\n", "cannot parse"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_overrides_are_typed_and_validated():
    cfg = load_config(None, **{"world.n_titles": 50})
    assert cfg.world.n_titles == 50
    assert parse_override("world.seed=3") == ("world.seed", 3)
    with pytest.raises(ConfigError, match="unknown config key"):
        cfg.with_overrides({"world.nope": 1})
    with pytest.raises(ConfigError, match="override must look like"):
        parse_override("seed")
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent.toml")


def _page(pid: int | None) -> Page:
    row = Row("r", "Row", "src", "because", (TitleCard(1, "One", 0),))
    return Page(pid, "US", 4, (row,), personalized=pid is not None)


def _write(root, version):
    w = SnapshotWriter(root, version)
    w.write_pages([(1, "control", _page(1))])
    w.write_fallbacks({("US", 4): _page(None)})
    import pyarrow as pa

    w.write_table("titles.parquet", pa.table({"title_id": [1]}))
    w.write_table("profiles.parquet", pa.table({"profile_id": [1]}))
    return w


def test_publish_switches_pointer_last_and_failed_publish_keeps_previous(tmp_path):
    _write(tmp_path, "v1").publish({"n": 1})
    assert current_version(tmp_path) == "v1"
    assert json.loads((current_dir(tmp_path) / "manifest.json").read_text())["n"] == 1
    # a run that dies before publishing leaves only a staging dir: v1 stays live
    w = SnapshotWriter(tmp_path, "v2")
    w.write_pages([])
    with pytest.raises(SnapshotError, match="fallback.parquet was not written"):
        w.publish({})
    assert current_version(tmp_path) == "v1"
    _write(tmp_path, "v3").publish({})
    assert current_version(tmp_path) == "v3"
    assert "v1" in list_versions(tmp_path)
    removed = prune(tmp_path, keep=1)
    assert ".staging-v2" in removed and list_versions(tmp_path) == ["v3"]


def test_missing_pointer_or_dir_is_a_snapshot_error(tmp_path):
    with pytest.raises(SnapshotError, match="no published snapshot"):
        current_dir(tmp_path)
    _write(tmp_path, "v1").publish({})
    os.rename(tmp_path / "v1", tmp_path / "gone")
    with pytest.raises(SnapshotError, match="missing"):
        current_dir(tmp_path)


def test_page_round_trips_through_json():
    p = _page(5)
    assert Page.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_allocation_is_deterministic_and_matches_shares():
    cfg = ExperimentConfig()
    ids = np.arange(20_000)
    cells = assign_cells(ids, cfg)
    share = float(np.mean(cells == "challenger"))
    assert abs(share - 0.2) < 0.015
    assert all(assign_cell(int(i), cfg) == c for i, c in zip(ids[:200], cells[:200]))
    other = ExperimentConfig(salt="another")
    assert np.mean(assign_cells(ids[:2000], other) != cells[:2000]) > 0.2  # salt re-randomizes
    assert 0.0 <= bucket(123, "s") < 1.0


def test_catalog_positions_match_the_index_for_known_and_unknown_ids(catalog):
    rng = np.random.default_rng(0)
    ids = np.concatenate([rng.choice(catalog.title_ids, 50), [-1, 5, 10**12]])
    expected = [catalog.index.get(int(t), -1) for t in ids]
    assert catalog.positions(ids).tolist() == expected
    assert catalog.positions(np.array([], np.int64)).tolist() == []


@pytest.mark.parametrize("spread", [1, 10**9])  # a dense id table, then ids too sparse for one
def test_catalog_positions_agree_on_dense_and_sparse_ids(catalog, spread):
    ids = catalog.title_ids * spread + 7
    other = dataclasses.replace(catalog, title_ids=ids, index={int(t): i for i, t in enumerate(ids)})
    assert (other._dense_table is None) == (spread > 1)
    rng = np.random.default_rng(1)
    asked = np.concatenate([rng.choice(ids, 200), [0, 6, -3, int(ids.max()) + 1, 10**15], ids[:3] + 1])
    assert other.positions(asked).tolist() == [other.index.get(int(t), -1) for t in asked]
    assert other.positions(asked.reshape(-1, 1)).shape == (len(asked), 1)
