"""Save -> load gives back an equal artifact: ranker (both kinds), artwork policy, top lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from bandits.artifact import from_artifact, to_artifact
from bandits.log import BanditLog
from bandits.policies import make_policy
from bandits.simulate import SimWorld, make_world, simulate_log
from pathways.artifacts.artwork import FEATURIZER, META, STATE, ArtworkPolicyArtifact
from pathways.artifacts.ranker import MLP, RankerArtifact
from pathways.artifacts.top_lists import TopLists

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3)).astype(np.float32)


def _ranker(kind: str) -> RankerArtifact:
    if kind == "mlp":
        torch.manual_seed(0)
        model = MLP(3, 8).eval()
    else:
        model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    return RankerArtifact(kind, ["a", "b", "c"], X.mean(0), X.std(0), model, hidden=8 if kind == "mlp" else 0,
                          metrics={"valid_auc": 0.7})


@pytest.mark.parametrize("kind", ["mlp", "gbdt"])
def test_ranker_round_trip_predicts_the_same(tmp_path, kind: str) -> None:
    art = _ranker(kind)
    loaded = RankerArtifact.load(art.save(tmp_path / kind))
    assert (loaded.kind, loaded.feature_names, loaded.hidden, loaded.metrics) == (kind, ["a", "b", "c"], art.hidden, art.metrics)
    np.testing.assert_array_equal(loaded.mean, art.mean)
    np.testing.assert_allclose(loaded.predict(X), art.predict(X), rtol=1e-6)
    assert len(np.unique(art.predict(X))) > 1  # a constant model would make the comparison empty


def test_ranker_load_of_an_empty_folder_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no ranker artifact"):
        RankerArtifact.load(tmp_path)


def test_artwork_artifact_round_trip(tmp_path) -> None:
    state = {"coef": RNG.normal(size=5), "intercept": np.array([0.5])}
    fz = {"context_names": np.array(["genre:A"]), "title_ids": np.array([1, 2])}
    art = ArtworkPolicyArtifact("logistic", {"C": 2.0, "epsilon": 0.1}, "logistic-abc", fz, state)
    path = art.save(tmp_path / "policy")
    assert sorted(p.name for p in path.iterdir()) == sorted([META, STATE, FEATURIZER])
    loaded = ArtworkPolicyArtifact.load(path)
    assert (loaded.kind, loaded.config, loaded.version) == ("logistic", {"C": 2.0, "epsilon": 0.1}, "logistic-abc")
    for got, want in ((loaded.state, state), (loaded.featurizer, fz)):
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_artwork_artifact_needs_a_featurizer_and_a_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs its featurizer"):
        ArtworkPolicyArtifact("uniform", {}, "v1", {})
    with pytest.raises(FileNotFoundError, match="no artwork policy"):
        ArtworkPolicyArtifact.load(tmp_path)


@pytest.fixture(scope="module")
def sim() -> tuple[SimWorld, BanditLog]:
    world = make_world(n_profiles=40, n_titles=12, seed=1)
    return world, simulate_log(world, make_policy("uniform", world.featurizer), 2_000, seed=2, version="u")


@pytest.mark.parametrize("kind", ["uniform", "linucb", "logistic"])
def test_policy_to_artifact_and_back_gives_the_same_probabilities(tmp_path, sim, kind: str) -> None:
    world, log = sim
    fz = world.featurizer
    policy = make_policy(kind, fz).fit(log)
    loaded, version = from_artifact(ArtworkPolicyArtifact.load(to_artifact(policy, "v9").save(tmp_path / "p")))
    assert version == "v9" and loaded.kind == kind and loaded.config == policy.config
    assert loaded.featurizer is not None and loaded.featurizer.context_names == fz.context_names
    for name in ("title_ids", "arm_slot", "arm_kind", "arm_mask"):
        np.testing.assert_array_equal(getattr(loaded.featurizer, name), getattr(fz, name))
    titles = world.title_ids[:6]
    feats = fz.transform(world.truth.context(np.arange(6)), titles)
    want = policy.probabilities(feats, fz.n_arms(titles))
    np.testing.assert_allclose(loaded.probabilities(feats, fz.n_arms(titles)), want)
    again, _ = from_artifact(to_artifact(loaded, "v9"))
    np.testing.assert_allclose(again.probabilities(feats, fz.n_arms(titles)), want)


def test_a_policy_without_featurizer_cannot_be_saved() -> None:
    with pytest.raises(ValueError, match="needs its featurizer"):
        to_artifact(make_policy("uniform"), "v1")


def test_top_lists_round_trip_keeps_order_and_types(tmp_path) -> None:
    lists = TopLists.from_arrays(np.array([5, 2]), [np.array([9, 7, 8]), np.array([], np.int64)],
                                 [np.array([3.0, 2.0, 1.0]), np.array([])])
    loaded = TopLists.load(lists.save(tmp_path / "top.parquet"))
    assert list(loaded.lists) == [5, 2]
    assert loaded.lists[5][0].tolist() == [9, 7, 8] and loaded.lists[5][0].dtype == np.int64
    assert loaded.lists[5][1].tolist() == [3.0, 2.0, 1.0] and loaded.lists[5][1].dtype == np.float32
    assert loaded.lists[2][0].size == 0


@pytest.mark.parametrize(
    ("pids", "titles", "scores", "match"),
    [
        ([1, 2], [[1]], [[1.0]], "must align"),
        ([1, 1], [[1], [2]], [[1.0], [1.0]], "duplicate"),
        ([1], [[1, 2]], [[1.0]], "profile 1: .* must align"),
    ],
)
def test_bad_top_lists(pids: list, titles: list, scores: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TopLists.from_arrays(np.array(pids), [np.array(t) for t in titles], [np.array(s) for s in scores])


def test_top_lists_load_many_row_groups_and_chunks_as_views_of_two_flat_arrays(tmp_path: Path) -> None:
    """Written block by block (a row group each, as the nightly writes them), read back without a
    Python object per title: each profile's arrays are views of one title-id and one score array."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pathways.artifacts.top_lists import SCHEMA

    rng = np.random.default_rng(4)
    path = tmp_path / "lists.parquet"
    expected: dict[int, tuple[list[int], list[float]]] = {}
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for block in range(4):
            pids = list(range(block * 10, block * 10 + 7))
            titles = [rng.integers(0, 500, rng.integers(0, 6)).tolist() for _ in pids]
            scores = [rng.normal(size=len(t)).astype(np.float32).tolist() for t in titles]
            expected.update({p: (t, s) for p, t, s in zip(pids, titles, scores)})
            writer.write_table(pa.table({"profile_id": pids, "title_ids": titles, "scores": scores}, schema=SCHEMA))
    loaded = TopLists.load(path).lists
    assert list(loaded) == list(expected)
    for pid, (titles, scores) in expected.items():
        assert loaded[pid][0].tolist() == titles and loaded[pid][1].tolist() == scores
        assert loaded[pid][0].dtype == np.int64 and loaded[pid][1].dtype == np.float32
    bases = {id(t.base) for t, _ in loaded.values() if t.size}
    assert len(bases) == 1  # one flat array underneath, not one per profile


def test_top_lists_reader_gives_the_loaded_lists_with_a_bounded_cache(tmp_path: Path) -> None:
    """The pages stage's reader: the same arrays as ``load`` for every profile, ids in any order
    (sampled users first, then folded-in blocks), None for a profile without a list, and never more
    row groups decoded at once than its cache holds, whichever thread asks."""
    import threading

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pathways.artifacts.top_lists import SCHEMA, TopListsReader

    rng = np.random.default_rng(9)
    path = tmp_path / "lists.parquet"
    blocks = [list(range(0, 100, 7)), list(range(101, 140)), list(range(2, 60, 7)), list(range(140, 170))]
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for pids in blocks:
            titles = [rng.integers(0, 900, rng.integers(0, 9)).tolist() for _ in pids]
            scores = [rng.normal(size=len(t)).astype(np.float32).tolist() for t in titles]
            writer.write_table(pa.table({"profile_id": pids, "title_ids": titles, "scores": scores}, schema=SCHEMA))
    loaded = TopLists.load(path).lists
    reader = TopListsReader(path, cache_groups=2)
    assert len(reader) == len(loaded) and sorted(reader) == sorted(loaded)
    for pid in sorted(loaded):
        got = reader[pid]
        assert got[0].tolist() == loaded[pid][0].tolist() and got[1].tolist() == loaded[pid][1].tolist()
        assert got[0].dtype == np.int64 and got[1].dtype == np.float32
        assert reader.cached_groups() <= 2
    assert reader.get(100) is None and 100 not in reader and 7 in reader
    with pytest.raises(KeyError):
        reader[10_000]
    errors: list[BaseException] = []

    def read_all() -> None:
        try:
            for pid in rng.permutation(sorted(loaded)).tolist():
                assert reader[pid][0].tolist() == loaded[pid][0].tolist()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read_all) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and reader.cached_groups() <= 2


def test_top_lists_reader_refuses_another_file_and_repeated_profiles(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pathways.artifacts.top_lists import SCHEMA, TopListsReader

    pq.write_table(pa.table({"profile_id": [1, 2]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="not a top lists file"):
        TopListsReader(tmp_path / "other.parquet")
    pq.write_table(pa.table({"profile_id": [1, 1], "title_ids": [[1], [2]], "scores": [[1.0], [2.0]]}, schema=SCHEMA),
                   tmp_path / "twice.parquet")
    with pytest.raises(ValueError, match="twice"):
        TopListsReader(tmp_path / "twice.parquet")
    with pytest.raises(ValueError, match="cache_groups"):
        TopListsReader(tmp_path / "twice.parquet", cache_groups=0)
