"""One SASRec fit a night: the retrieval stage's fit, saved with its key, is the top row's generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathways.models_config import FinalConfig, ModelsConfig, SASRecConfig
from tests.models.conftest import successor_data
from training.models import PathwaysFinal
from training.models.sasrec import SASRec
from training.registry import BuildContext, build
from training.shared_fit import fit_key, load_shared, save_shared
from training.top_row import shared_generators

MODELS = ModelsConfig(
    sasrec=SASRecConfig(dim=16, n_heads=1, lr=1e-2, max_epochs=6, eval_every=2, patience=100, valid_k=2),
    final=FinalConfig(generators=("sasrec", "item_knn_recent", "popularity"), per_generator=5, budget=8, valid_k=2),
)


def retrieval_fit(tmp_path: Path, models: ModelsConfig = MODELS, seed: int = 3) -> Path:
    """What ``training.retrieval`` does for SASRec: fit on all the data (validation carved inside), save."""
    data = successor_data()
    model = build("sasrec", BuildContext(models=models, seed=seed)).fit(data)
    return save_shared(model, tmp_path / "sasrec.shared", fit_key(model, data, model.config.valid_k))


def test_the_top_row_takes_the_retrieval_sasrec_without_fitting_it_again(tmp_path, monkeypatch):
    data = successor_data()
    own = PathwaysFinal(MODELS, seed=3).fit(data)
    assert own.reused_generators_ == []
    path = retrieval_fit(tmp_path)
    calls: list[int] = []
    original = SASRec._train
    monkeypatch.setattr(SASRec, "_train", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    reusing = PathwaysFinal(MODELS, seed=3)
    prefit = shared_generators(reusing, data, None, {"sasrec": path})
    assert set(prefit) == {"sasrec"}
    reusing.fit(data, prefit=prefit)
    assert calls == [] and reusing.reused_generators_ == ["sasrec"]  # SASRec not trained a second time
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(reusing.score(users), own.score(users))  # the same top row, bit for bit
    assert reusing.epochs_ == own.epochs_


@pytest.mark.parametrize("change", ["seed", "settings", "valid_k", "data"])
def test_another_fit_is_not_taken(tmp_path, change):
    path = retrieval_fit(tmp_path, seed=4 if change == "seed" else 3,
                         models=MODELS.model_copy(update={"sasrec": MODELS.sasrec.model_copy(update={"dim": 8})})
                         if change == "settings" else MODELS)
    data = successor_data(seed=1) if change == "data" else successor_data()
    models = MODELS.model_copy(update={"final": MODELS.final.model_copy(update={"valid_k": 1})}) if change == "valid_k" else MODELS
    final = PathwaysFinal(models, seed=3)
    assert shared_generators(final, data, None, {"sasrec": path}) == {}
    assert shared_generators(final, data, None, {"sasrec": tmp_path / "missing"}) == {}


def test_a_refit_model_is_not_shared(tmp_path):
    models = MODELS.model_copy(update={"sasrec": MODELS.sasrec.model_copy(update={"refit": True, "max_epochs": 2})})
    data = successor_data()
    model = build("sasrec", BuildContext(models=models, seed=3)).fit(data)
    with pytest.raises(ValueError, match="refit"):
        save_shared(model, tmp_path / "m", fit_key(model, data, 2))
    assert load_shared(tmp_path / "m", fit_key(model, data, 2)) is None
