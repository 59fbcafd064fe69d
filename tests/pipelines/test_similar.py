"""The snapshot's similar-titles table: the same neighbours as the nightly "Because you watched"
rows' single-title search, the title itself never among them, k per title, catalog titles only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from candidates.because_you_watched import similar_titles
from pathways.artifacts.factor_index import FactorIndex
from pathways.artifacts.factors import FactorArtifacts
from pathways.snapshot import SIMILAR, SIMILAR_SCHEMA
from pipelines.similar import similar_titles_table, write_similar_titles


def artifacts(n_items: int = 23, dim: int = 4, seed: int = 0) -> FactorArtifacts:
    rng = np.random.default_rng(seed)
    title_ids = rng.permutation(np.arange(500, 500 + n_items))  # not in id order
    return FactorArtifacts(rng.normal(size=(2, dim)), rng.normal(size=(n_items, dim)), np.array([1, 2]), title_ids)


@pytest.mark.parametrize("block", [1, 5, 1024])
def test_each_title_gets_the_nightly_search_top_k(block: int) -> None:
    art = artifacts()
    table = similar_titles_table(art, k=6, block=block)
    assert table.schema == SIMILAR_SCHEMA
    assert table.column("title_id").to_pylist() == sorted(art.title_ids.tolist())
    index = FactorIndex(art.item_factors, normalize=True)
    for tid, got, scores in zip(*(table.column(c).to_pylist() for c in ("title_id", "similar_ids", "scores"))):
        want, want_scores = similar_titles(index, art, tid, 6)
        assert got == want.tolist() and tid not in got
        assert scores == pytest.approx(want_scores.tolist(), abs=1e-5)
        assert scores == sorted(scores, reverse=True)


def test_the_title_itself_is_dropped_even_when_a_twin_ties_with_it() -> None:
    items = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    art = FactorArtifacts(np.ones((1, 2)), items, np.array([1]), np.array([10, 11, 12, 13]))
    table = similar_titles_table(art, k=2)
    got = table.column("similar_ids").to_pylist()
    assert got[:2] == [[11, 13], [10, 13]]  # each twin's best is the other, never itself
    assert got[2][0] == 13 and got[2][1] in (10, 11) and sorted(got[3]) == [10, 11]


def test_k_beyond_the_catalog_and_catalog_filter() -> None:
    art = artifacts(n_items=5)
    catalog = np.sort(art.title_ids)[:3]
    table = similar_titles_table(art, k=10, catalog_ids=np.append(catalog, 9999))
    assert table.column("title_id").to_pylist() == catalog.tolist()
    for tid, got in zip(table.column("title_id").to_pylist(), table.column("similar_ids").to_pylist()):
        assert sorted(got) == sorted(set(catalog.tolist()) - {tid})  # the other catalog titles, no more
    assert similar_titles_table(art, k=3, catalog_ids=np.array([1])).num_rows == 0
    with pytest.raises(ValueError, match="k must be"):
        similar_titles_table(art, k=0)


def test_written_from_the_saved_factors(tmp_path: Path) -> None:
    art = artifacts()
    art.save(tmp_path / "als")
    assert write_similar_titles(tmp_path / "als", 4, tmp_path / "similar.parquet") == 23
    table = pq.read_table(tmp_path / "similar.parquet")
    assert table.equals(similar_titles_table(art, k=4))
    assert {len(x) for x in table.column("similar_ids").to_pylist()} == {4}


def test_publish_carries_the_table_into_the_snapshot_when_the_run_has_one(tmp_path: Path, monkeypatch) -> None:
    from pipelines import publish as pub
    from serving.because import load_similar
    from tests.pipelines.test_publish import _config, _run
    from tests.serving.snapshot_fixtures import profiles_table, titles_table

    monkeypatch.setattr(pub, "_feature_services", lambda ctx: {"project": "p", "services": []})
    monkeypatch.setattr(pub, "prune_model_versions", lambda config, now=None, names=None: [])
    config = _config(tmp_path)
    old = _run(config, "r0", 5)  # a run from before the table: its snapshot has none
    first = config.snapshots_dir / pub.publish_run(old, (titles_table(), profiles_table()))["version"]
    assert not (first / SIMILAR).exists() and load_similar(first) is None

    ctx = _run(config, "r1", 5)
    art = artifacts()
    write_similar_titles(_saved(art, tmp_path / "als"), 3, Path(ctx.outputs["pages"]["dir"]) / SIMILAR)
    snap = config.snapshots_dir / pub.publish_run(ctx, (titles_table(), profiles_table()))["version"]
    similar = load_similar(snap)
    assert similar is not None and similar.anchors.tolist() == sorted(art.title_ids.tolist())
    got = similar.get(int(art.title_ids[0]))
    assert got is not None and len(got[0]) == 3


def _saved(art: FactorArtifacts, path: Path) -> Path:
    art.save(path)
    return path
