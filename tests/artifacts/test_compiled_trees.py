"""The gbdt ranker's trees compiled to native code (tl2cgen): the probabilities of scikit-learn's
walk, built once per model, checked before use, and scikit-learn kept where they cannot be used."""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

import pathways.artifacts.compiled_trees as ct
from pathways.artifacts.compiled_trees import CompiledTrees, probe_rows
from pathways.artifacts.ranker import RankerArtifact

RNG = np.random.default_rng(7)
X = RNG.normal(size=(2_000, 5))
X[RNG.random(X.shape) < 0.1] = np.nan  # missing values take each split's learned side
Y = ((np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 - 0.3 * np.nan_to_num(X[:, 2])) > 0.4).astype(int)


@pytest.fixture(scope="module")
def model() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=15, random_state=0).fit(X, Y)


@pytest.fixture(scope="module")
def compiled(model, tmp_path_factory) -> CompiledTrees:
    got = CompiledTrees.load_or_build(model, tmp_path_factory.mktemp("trees"))
    assert got is not None
    return got


def test_compiled_trees_give_predict_proba(model, compiled) -> None:
    want = model.predict_proba(X)[:, 1]
    got = compiled.predict_proba1(X)
    assert got.dtype == np.float64 and got.shape == (len(X),)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert len(np.unique(np.round(want, 6))) > 20  # many leaves reached: the comparison is not empty
    assert compiled.predict_proba1(X[:0]).shape == (0,)


def test_probe_rows_sit_on_both_sides_of_every_split(model) -> None:
    probe = probe_rows(model)
    for (tree,) in model._predictors:
        splits = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
        for f, t in zip(splits["feature_idx"], splits["num_threshold"]):
            column = probe[:, f]
            assert (column <= t).any() and (column > t).any()
    assert np.isnan(probe).any()


def test_a_model_is_compiled_once_and_its_library_reused(model, compiled, monkeypatch) -> None:
    import tl2cgen

    def no_second_build(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(tl2cgen, "export_lib", no_second_build)
    again = CompiledTrees.load_or_build(model, compiled.lib.parent)
    assert again is not None and again.lib == compiled.lib
    assert [p.name for p in compiled.lib.parent.iterdir()] == [compiled.lib.name]  # no build folder left behind


def test_without_a_compiler_a_build_or_a_right_library_sklearn_scores(model, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(ct, "TOOLCHAIN", "no-such-cc")
    assert CompiledTrees.load_or_build(model, tmp_path / "a") is None
    assert "no C compiler" in caplog.text
    monkeypatch.undo()

    import tl2cgen

    def broken_compiler(*args, **kwargs):
        raise RuntimeError("gcc: internal compiler error")

    monkeypatch.setattr(tl2cgen, "export_lib", broken_compiler)
    assert CompiledTrees.load_or_build(model, tmp_path / "c") is None
    assert "internal compiler error" in caplog.text and not list((tmp_path / "c").iterdir())
    monkeypatch.undo()

    def off_by_a_little(self, X):
        return ct_predict(self, X) + 1e-9

    ct_predict = CompiledTrees.predict_proba1
    monkeypatch.setattr(CompiledTrees, "predict_proba1", off_by_a_little)
    assert CompiledTrees.load_or_build(model, tmp_path / "b") is None
    assert "differ from predict_proba" in caplog.text


def test_the_ranker_scores_with_its_compiled_trees(model, compiled, tmp_path, monkeypatch) -> None:
    X32 = np.nan_to_num(X).astype(np.float32)
    ranker = RankerArtifact("gbdt", list("abcde"), np.zeros(5, np.float32), np.ones(5, np.float32), model)
    plain = ranker.predict(X32)
    assert ranker.compile_trees(compiled.lib.parent)
    shipped = pickle.loads(pickle.dumps(ranker))  # to another process: its library path, not its predictors
    assert shipped.compiled is not None and shipped.compiled.lib == compiled.lib
    for m in (model, shipped.model):
        monkeypatch.setattr(m, "predict_proba", lambda X: pytest.fail("scored by sklearn"))
    np.testing.assert_array_equal(ranker.predict_segments(X32, np.array([0, 700, len(X32)])), plain)
    np.testing.assert_array_equal(shipped.predict(X32), plain)
    mlp = RankerArtifact("mlp", list("abcde"), np.zeros(5, np.float32), np.ones(5, np.float32), object())
    assert not mlp.compile_trees(tmp_path) and not list(tmp_path.iterdir())


def test_threads_each_use_their_own_predictor(model, compiled) -> None:
    want = compiled.predict_proba1(X)
    got: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        for _ in range(20):
            got[i] = compiled.predict_proba1(X)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        np.testing.assert_array_equal(got[i], want)


def test_the_cache_keeps_the_most_recently_used_libraries(tmp_path: Path) -> None:
    for i in range(ct.KEEP + 3):
        lib = tmp_path / f"trees-{i:02d}.so"
        lib.write_bytes(b"")
        os.utime(lib, (1_000_000 + i, 1_000_000 + i))
    ct._prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"trees-{i:02d}.so" for i in range(3, ct.KEEP + 3)]
