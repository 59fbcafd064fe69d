"""SASRec learns a deterministic successor rule; seeded determinism; save/load parity."""

from __future__ import annotations

import numpy as np
import pytest

from pathways.models_config import SASRecConfig
from training.models.sasrec import SASRec

TINY = dict(dim=16, n_heads=1, lr=1e-2, max_epochs=30, eval_every=5, patience=2, valid_k=1, refit=False)


def _next_items(data) -> np.ndarray:
    return np.array([(s[-1] + 1) % data.n_items for s in data.sequences()])


def test_learns_the_successor_rule(successors):
    model = SASRec(**TINY).fit(successors)
    top = model.score(np.arange(successors.n_users)).argmax(axis=1)
    assert (top == _next_items(successors)).mean() >= 0.9
    assert model.best_epochs_ >= 5 and model.history_  # early stopping ran on a carved split


def test_sampled_softmax_path_also_learns(successors):
    model = SASRec(**TINY, full_softmax_max_items=10, n_negatives=12).fit(successors, epochs=30)
    top = model.score(np.arange(successors.n_users)).argmax(axis=1)
    assert (top == _next_items(successors)).mean() >= 0.8


def test_same_seed_same_scores_and_different_seed_differs(successors):
    a = SASRec(**TINY, seed=3).fit(successors, epochs=3).score(np.arange(5))
    b = SASRec(**TINY, seed=3).fit(successors, epochs=3).score(np.arange(5))
    c = SASRec(**TINY, seed=4).fit(successors, epochs=3).score(np.arange(5))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_save_load_parity(successors, tmp_path):
    model = SASRec(**TINY).fit(successors, epochs=3)
    model.save(tmp_path / "sasrec.pt")
    loaded = SASRec.load(tmp_path / "sasrec.pt")
    users = np.arange(successors.n_users)
    np.testing.assert_array_equal(model.score(users), loaded.score(users))
    assert loaded.best_epochs_ == model.best_epochs_


def test_score_shape_and_batch_equals_single(successors):
    model = SASRec(**TINY).fit(successors, epochs=2)
    batch = model.score(np.array([0, 5, 7]))
    assert batch.shape == (3, successors.n_items) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[1], model.score(np.array([5]))[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, field",
    [({"dim": 0}, "dim"), ({"dim": 10, "n_heads": 3}, "n_heads"), ({"dropout": 1.0}, "dropout"), ({"max_len": 0}, "max_len")],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        SASRecConfig(**overrides)


@pytest.mark.parametrize("setting, native, used", [("auto", True, True), ("auto", False, False), (True, False, True),
                                                   (False, True, False)])
def test_bf16_auto_autocasts_only_where_the_cpu_computes_bf16(successors, monkeypatch, setting, native, used):
    """bf16 autocast is 6x slower than float32 per step on an AVX2-only CPU: "auto" (the default)
    takes it only where oneDNN says the CPU computes bf16 natively; true / false force it."""
    import torch

    import training.models.torch_utils as torch_utils

    monkeypatch.setattr(torch_utils, "native_bf16", lambda: native)
    autocast = []
    real = torch.autocast

    def spy(device_type, dtype=None, enabled=True, **kw):
        autocast.append(enabled)
        return real(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(torch, "autocast", spy)
    model = SASRec(**{**TINY, "bf16": setting}).fit(successors, epochs=1)
    assert model.bf16_ is used
    assert autocast and set(autocast) == {used}  # every training step


def test_bf16_setting_is_validated():
    assert SASRecConfig().bf16 == "auto"
    with pytest.raises(ValueError, match="bf16"):
        SASRecConfig(bf16="sometimes")
    from training.models.torch_utils import native_bf16

    assert isinstance(native_bf16(), bool)
