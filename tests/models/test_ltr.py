"""Rankers order a toy set where one feature is the label (plus noise features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathways.models_config import RankerConfig
from training.models.ltr import PREDICT_ROWS, ListRanker, PointwiseGBDT, list_ndcg


def toy_lists(n_lists: int = 60, n_cands: int = 20, seed: int = 0):
    """Feature 0 = label + small noise, features 1..3 noise; two positives per list; ragged masks."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_lists, n_cands), np.float32)
    for row in range(n_lists):
        labels[row, rng.choice(n_cands - 4, 2, replace=False)] = 1.0
    features = rng.normal(size=(n_lists, n_cands, 4)).astype(np.float32)
    features[..., 0] = labels + 0.1 * rng.normal(size=labels.shape)
    mask = np.ones((n_lists, n_cands), bool)
    mask[::3, -4:] = False
    return features, mask, labels


@pytest.mark.parametrize("loss", ["listwise", "pairwise"])
def test_learns_to_put_positives_first(loss):
    features, mask, labels = toy_lists()
    ranker = ListRanker(loss=loss, max_epochs=30).fit(features, mask, labels)
    test_f, test_m, test_y = toy_lists(seed=1)
    scores = ranker.predict(test_f, test_m)
    assert list_ndcg(scores, test_y, test_m, 5) > 0.95
    assert np.isneginf(scores[~test_m]).all()


def test_pointwise_gbdt_baseline_also_orders():
    features, mask, labels = toy_lists()
    test_f, test_m, test_y = toy_lists(seed=1)
    scores = PointwiseGBDT(gbdt_max_iter=50).fit(features, mask, labels).predict(test_f, test_m)
    assert list_ndcg(scores, test_y, test_m, 5) > 0.95


def test_predict_in_chunks_scores_every_list_as_one_call_does():
    """``predict`` feeds the network ``PREDICT_ROWS`` candidates at a time: more lists than one
    chunk holds (ragged last chunk, missing and infinite features, padded candidates) score as the
    network on the whole standardized batch, -inf where the mask is false."""
    features, mask, labels = toy_lists()
    ranker = ListRanker(max_epochs=2).fit(features, mask, labels)
    many, many_mask, _ = toy_lists(n_lists=PREDICT_ROWS // 20 * 2 + 7, seed=3)
    many[5, 3, 1], many[9, 0, 2] = np.nan, np.inf
    x = torch.from_numpy(np.nan_to_num((many - ranker.mean_) / ranker.std_).astype(np.float32))
    with torch.no_grad():
        whole = ranker.net_(x).squeeze(-1).numpy()
    got = ranker.predict(many, many_mask)
    np.testing.assert_allclose(got[many_mask], whole[many_mask], rtol=1e-6, atol=0)
    assert np.isneginf(got[~many_mask]).all() and np.isfinite(got[many_mask]).all()


def test_list_ndcg_known_values():
    labels = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    mask = np.ones((2, 3), bool)
    scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    assert list_ndcg(scores, labels, mask, 3) == pytest.approx((1.0 + 0.5) / 2)


def test_seeded_determinism():
    features, mask, labels = toy_lists()
    a = ListRanker(max_epochs=3, seed=2).fit(features, mask, labels).predict(features, mask)
    b = ListRanker(max_epochs=3, seed=2).fit(features, mask, labels).predict(features, mask)
    np.testing.assert_array_equal(a, b)


def test_bad_inputs():
    features, mask, labels = toy_lists()
    with pytest.raises(ValueError, match="features must be"):
        ListRanker().fit(features[0], mask, labels)
    with pytest.raises(ValueError, match="mask shape"):
        ListRanker().fit(features, mask[:, :3], labels)
    with pytest.raises(ValueError, match="positive label"):
        ListRanker().fit(features, mask, np.zeros_like(labels))
    with pytest.raises(ValueError, match="loss"):
        RankerConfig(loss="pointwise")
