"""The rankers learn a known signal, survive save/load and the MLflow registry round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pathways import tracking
from pathways.artifacts.ranker import RankerArtifact
from pathways.artifacts.registry import load_registered
from pathways.config import TrainingConfig
from training.ranker import RANKER_NAME, log_ranker, train_ranker


def _frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2, noise = rng.normal(size=(3, n))
    p = 1 / (1 + np.exp(-(2.0 * x1 - 1.0 * x2)))
    return pd.DataFrame(
        {
            "profile_id": rng.integers(0, 50, n),
            "title_id": rng.integers(0, 80, n),
            "event_timestamp": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
            "f_signal": x1,
            "f_negative": x2,
            "f_noise": noise * 100 + 7,  # unscaled: standardization must handle it
            "label": (rng.random(n) < p).astype(np.float32),
        }
    )


COLS = ["f_signal", "f_negative", "f_noise"]


@pytest.mark.parametrize("kind", ["mlp", "gbdt"])
def test_ranker_learns_the_signal_and_round_trips(tmp_path, kind):
    cfg = TrainingConfig(ranker_epochs=5, ranker_batch_size=256)
    res = train_ranker(_frame(), COLS, cfg, kind=kind)
    assert res.metrics["valid_auc"] > 0.75
    X = np.array([[2.0, -1.0, 7.0], [-2.0, 1.0, 7.0]], np.float32)
    p = res.artifact.predict(X)
    assert p[0] > 0.8 and p[1] < 0.2
    loaded = RankerArtifact.load(res.artifact.save(tmp_path / kind))
    np.testing.assert_allclose(loaded.predict(X), p, rtol=1e-5)
    # A missing or infinite feature scores as the training mean (its standardized value is 0).
    odd = np.repeat(X[:1], 3, axis=0)
    odd[:, 1] = [np.nan, np.inf, -np.inf]
    at_mean = X[:1].copy()
    at_mean[0, 1] = res.artifact.mean[1]
    assert np.array_equal(res.artifact.predict(odd), np.repeat(res.artifact.predict(at_mean), 3))


def test_bad_training_input_is_rejected():
    cfg = TrainingConfig()
    with pytest.raises(ValueError, match="lacks columns"):
        train_ranker(_frame().drop(columns=["label"]), COLS, cfg)
    with pytest.raises(ValueError, match="kind must be"):
        train_ranker(_frame(), COLS, cfg, kind="svm")
    flat = _frame().assign(label=0.0)
    with pytest.raises(ValueError, match="both labels"):
        train_ranker(flat, COLS, cfg)
    res = train_ranker(_frame(), COLS, TrainingConfig(ranker_epochs=1))
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        res.artifact.predict(np.zeros((2, 2)))


def test_registered_champion_loads_back_equal(mlflow_uri):
    res = train_ranker(_frame(), COLS, TrainingConfig(ranker_epochs=1))
    logged = log_ranker(res, "test-ranker", tracking.CHAMPION, {"epochs": 1})
    assert tracking.alias_version(RANKER_NAME) == logged.version
    loaded = load_registered(tracking.alias_uri(RANKER_NAME), "ranker")
    X = _frame(50, seed=3)[COLS].to_numpy(np.float32)
    np.testing.assert_allclose(loaded.predict(X), res.artifact.predict(X), rtol=1e-5)


def test_ranker_settings_come_from_the_config():
    res = train_ranker(_frame(1000), COLS, TrainingConfig(ranker_valid_fraction=0.5, ranker_gbdt_max_iter=3), kind="gbdt")
    assert res.metrics["valid_rows"] == 500 and res.artifact.model.n_iter_ == 3
    assert train_ranker(_frame(1000), COLS, TrainingConfig(ranker_epochs=1)).metrics["valid_rows"] == 200  # default 0.2
    with pytest.raises(ValueError, match="ranker_valid_fraction"):
        TrainingConfig(ranker_valid_fraction=1.0)
