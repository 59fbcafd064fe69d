"""The harness end to end on a tiny MovieLens folder: tuning, report, JSON, MLflow runs, CLI."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from pathways.cli import main as pathways_main
from training.data import load_dataset
from training.evaluation import LeaveLastN, Temporal, TuningConfig, evaluate, run
from training.models import Popularity
from training.registry import ModelSpec, model_specs

MODELS = ["popularity", "item_knn", "ease"]


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory):
    """40 users x 60 movies, 12 ratings each, two taste groups; movies.csv with genres."""
    d = tmp_path_factory.mktemp("ml")
    rng = np.random.default_rng(0)
    lines = ["userId,movieId,rating,timestamp"]
    for u in range(1, 41):
        pool = np.arange(1, 31) if u % 2 else np.arange(31, 61)
        for t, m in enumerate(rng.choice(pool, size=12, replace=False)):
            lines.append(f"{u},{m},{rng.integers(1, 6)}.0,{1000 * t + u}")
    (d / "ratings.csv").write_text("\n".join(lines) + "\n")
    genres = ["Comedy", "Drama|Romance", "Action", "Children|Comedy"]
    (d / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f"{m},Movie {m} (199{m % 10}),{genres[m % 4]}\n" for m in range(1, 61))
    )
    return d


def test_run_reports_every_model_and_logs_to_mlflow(ml_dir, mlflow_uri):
    data = load_dataset(ml_dir)
    report = run(MODELS, data, LeaveLastN(5), TuningConfig(trials=3, timeout_s=None), ks=(5, 10), budget=20, mlflow=True)
    assert list(report.results) == MODELS
    assert report.data["n_test_users"] == 40 and report.data["n_test"] == 200
    ease = report.results["ease"]
    assert ease.n_trials == 3 and ease.validation_value is not None and ease.params["l2"] > 0
    assert report.results["popularity"].n_trials == 0
    for result in report.results.values():
        assert {"ndcg@10", "recall@10", "map@10", "coverage@10", "novelty@10", "diversity@10", "gini@10", "recall@20"} <= set(result.metrics)
        assert 0.0 <= result.metrics["ndcg@10"] <= 1.0 and result.train_seconds >= 0
    # The two taste groups are learnable: personal models beat popularity.
    assert report.results["ease"].metrics["recall@10"] > report.results["popularity"].metrics["recall@10"]
    assert set(report.candidates["recall"]) == set(MODELS) and 0 < report.candidates["union_recall"] <= 1
    assert report.best_baseline() in MODELS
    table = report.table()
    assert all(name in table for name in MODELS)
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["models"]["ease"]["metrics"]["ndcg@10"] == pytest.approx(ease.metrics["ndcg@10"])
    child = mlflow.get_run(ease.run_id)
    assert child.data.tags["data.fingerprint"] == data.fingerprint()
    assert child.data.tags["mlflow.parentRunId"] == report.run_id
    assert child.data.metrics["ndcg_at_10"] == pytest.approx(ease.metrics["ndcg@10"])
    assert "train_seconds" in child.data.metrics and float(child.data.params["model.l2"]) == pytest.approx(ease.params["l2"])


def test_budget_covering_the_catalog_recalls_everything(ml_dir):
    data = load_dataset(ml_dir)
    split = LeaveLastN(5).split(data.interactions)
    model = Popularity().fit(split.train)
    metrics, lists = evaluate(model, split, ks=(5,), budget=data.interactions.n_items)
    assert metrics[f"recall@{data.interactions.n_items}"] == pytest.approx(1.0)
    train = split.train.matrix()
    users = split.test_users()
    assert not any(train[u, i] for u, row in zip(users, lists[:, :5]) for i in row)  # train items excluded


def test_temporal_protocol_runs(ml_dir):
    report = run(["popularity"], load_dataset(ml_dir), Temporal(quantile=0.5), TuningConfig(trials=0), ks=(5,), budget=0, mlflow=False)
    assert report.protocol == "temporal" and report.data["n_test_users"] == 40 and not report.candidates
    assert report.data["n_train"] + report.data["n_test"] == report.data["n_interactions"]


def test_extra_models_plug_into_the_registry(ml_dir, monkeypatch):
    from training import registry as reg

    monkeypatch.setitem(reg._EXTRA, "pop2", ModelSpec("pop2", lambda p, ctx: Popularity(), None, "model"))
    assert model_specs()["pop2"].kind == "model"
    report = run(["popularity", "pop2"], load_dataset(ml_dir), LeaveLastN(5), TuningConfig(trials=0), ks=(5,), budget=10, mlflow=False)
    assert report.results["pop2"].metrics == report.results["popularity"].metrics
    with pytest.raises(ValueError, match="unknown models"):
        run(["nope"], load_dataset(ml_dir), LeaveLastN(5), mlflow=False)


def test_cli_evaluate_writes_json(ml_dir, mlflow_uri, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = pathways_main(
        ["evaluate", "--data", str(ml_dir), "--models", "popularity,ease", "--trials", "2", "--ks", "5,10", "--budget", "20",
         "--json", str(out), "--mlflow-uri", mlflow_uri]
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["protocol"] == "leave-last-5" and set(doc["models"]) == {"popularity", "ease"}
    assert "ease" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--models", "popularity,magic"], "unknown ['magic']"),
        (["--models", "popularity,popularity"], "lists a model twice"),
        (["--models", "pop,itemknn"], "unknown ['pop', 'itemknn']"),  # the old spellings are gone
        (["--protocol", "random"], "unknown protocol"),
        (["--trials", "-1"], "--trials must be >= 0"),
        (["--ks", "5,x"], "--ks must be comma-separated integers"),
        (["--budget", "-3"], "--budget must be >= 0"),
    ],
)
def test_cli_rejects_bad_flags(ml_dir, capsys, flags, message):
    assert pathways_main(["evaluate", "--data", str(ml_dir), "--no-mlflow", *flags]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_data(tmp_path, capsys):
    assert pathways_main(["evaluate", "--data", str(tmp_path / "none"), "--no-mlflow"]) == 2
    assert "--data folder not found" in capsys.readouterr().err
