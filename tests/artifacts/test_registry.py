"""The one loader: every registered kind comes back from a real (SQLite) MLflow registry, and its
pyfunc form predicts what the artifact does."""

from __future__ import annotations

import warnings
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch

from bandits.artifact import download_policy, policy_probabilities, to_artifact
from bandits.policies import make_policy
from bandits.simulate import make_world, simulate_log
from pathways import tracking
from pathways.artifacts.factor_index import FactorIndex
from pathways.artifacts.factors import FactorArtifacts
from pathways.artifacts.ranker import MLP, RankerArtifact
from pathways.artifacts.registry import Kind, load_registered, log_artifact_model, pyfunc_model


def _register(kind: Kind, artifact: Any, name: str, **kwargs: Any) -> str:
    with mlflow.start_run(run_name=f"test-{name}"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow asks for predict type hints
        info = log_artifact_model(kind, artifact, name, tracking.PIP_REQUIREMENTS, **kwargs)
    tracking.register(info.model_uri, name, alias=tracking.CHAMPION)
    return tracking.alias_uri(name)


def test_factors_come_back_and_predict_top_k(mlflow_uri: str) -> None:
    rng = np.random.default_rng(0)
    art = FactorArtifacts(rng.normal(size=(4, 3)), rng.normal(size=(9, 3)), [1, 2, 3, 4], np.arange(100, 109))
    uri = _register("factors", art, "registry_test_factors")
    loaded = load_registered(uri, "factors")
    assert isinstance(loaded, FactorArtifacts)
    np.testing.assert_array_equal(loaded.user_factors, art.user_factors)
    np.testing.assert_array_equal(loaded.title_ids, art.title_ids)
    got = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"profile_id": [3, 99]}), params={"k": 4})
    want = art.title_ids[FactorIndex(art.item_factors).search(art.user_factors[2], 4)[1][0]]
    assert got[0] == want.tolist() and got[1] == []


def test_ranker_comes_back_and_predicts_the_same(mlflow_uri: str) -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(1).normal(size=(20, 2)).astype(np.float32)
    art = RankerArtifact("mlp", ["a", "b"], np.zeros(2, np.float32), np.ones(2, np.float32), MLP(2, 4).eval(), hidden=4)
    uri = _register("ranker", art, "registry_test_ranker")
    loaded = load_registered(uri, "ranker")
    assert isinstance(loaded, RankerArtifact) and loaded.feature_names == ["a", "b"]
    np.testing.assert_allclose(loaded.predict(x), art.predict(x), rtol=1e-6)
    got = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame(x, columns=["a", "b"]))
    np.testing.assert_allclose(np.asarray(got), art.predict(x), rtol=1e-6)


def test_artwork_policy_comes_back_and_predicts_the_same(mlflow_uri: str) -> None:
    world = make_world(n_profiles=30, n_titles=10, seed=4)
    log = simulate_log(world, make_policy("uniform", world.featurizer), 1_500, seed=5, version="u")
    policy = make_policy("logistic", world.featurizer).fit(log)
    uri = _register("artwork_policy", to_artifact(policy, "logistic-t1"), "registry_test_policy",
                    predictor=policy_probabilities)
    loaded, version = download_policy(uri)
    assert version == "logistic-t1" and loaded.kind == "logistic"
    titles = world.title_ids[:5]
    context = world.truth.context(np.arange(5))
    fz = world.featurizer
    want = policy.probabilities(fz.transform(context, titles), fz.n_arms(titles))
    np.testing.assert_allclose(loaded.probabilities(fz.transform(context, titles), fz.n_arms(titles)), want)
    frame = pd.DataFrame(context, columns=list(fz.context_names)).assign(title_id=titles)
    got = mlflow.pyfunc.load_model(uri).predict(frame)
    np.testing.assert_allclose(np.asarray(got), want)


def test_a_model_of_another_kind_or_an_unknown_kind_is_refused(mlflow_uri: str) -> None:
    art = FactorArtifacts(np.ones((1, 2)), np.ones((2, 2)), [1], [5, 6])
    uri = _register("factors", art, "registry_test_wrong_kind")
    with pytest.raises(FileNotFoundError, match=r"holds no ranker artifact \(ranker.json\)"):
        load_registered(uri, "ranker")
    with pytest.raises(ValueError, match="unknown artifact kind 'svd'"):
        load_registered(uri, "svd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no default predictor"):
        pyfunc_model("artwork_policy")
