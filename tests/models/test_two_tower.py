"""Two-tower separates disjoint blocks; embeddings reproduce scores; faiss matches brute force."""

from __future__ import annotations

import numpy as np
import pytest

from pathways.artifacts.factor_index import FactorIndex
from pathways.models_config import TwoTowerConfig
from training.models.two_tower import TwoTower

TINY = dict(dim=16, batch_size=64, lr=1e-2, temperature=0.1, max_epochs=20, eval_every=5, valid_k=1)


def test_separates_two_disjoint_blocks(blocks):
    model = TwoTower(**TINY).fit(blocks)
    scores = model.score(np.arange(blocks.n_users))
    half = blocks.n_items // 2
    even, odd = scores[0::2], scores[1::2]
    assert (even[:, :half].mean(1) > even[:, half:].mean(1)).all()
    assert (odd[:, half:].mean(1) > odd[:, :half].mean(1)).all()


def test_embeddings_give_the_scores_and_faiss_retrieves_the_same_top_k(blocks):
    model = TwoTower(**TINY).fit(blocks, epochs=3, item_features=np.eye(blocks.n_items, 4, dtype=np.float32))
    users = np.arange(blocks.n_users)
    u, v = model.user_embeddings(users), model.item_embeddings()
    assert u.dtype == v.dtype == model.score(users).dtype == np.float32  # float64 doubles the catalog-wide product
    np.testing.assert_array_equal(u @ v.T, model.score(users))
    _, items = FactorIndex(v).search(u, 5)
    brute = np.argsort(-(u @ v.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(np.sort(items, 1), np.sort(brute, 1))


def test_seeded_determinism(blocks):
    a = TwoTower(**TINY, seed=1).fit(blocks, epochs=2).score(np.arange(4))
    b = TwoTower(**TINY, seed=1).fit(blocks, epochs=2).score(np.arange(4))
    np.testing.assert_array_equal(a, b)


def test_feature_rows_must_match(blocks):
    with pytest.raises(ValueError, match="item_features"):
        TwoTower(**TINY).fit(blocks, epochs=1, item_features=np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="temperature"):
        TwoTowerConfig(temperature=0.0)


def test_item_vectors_are_computed_once_until_the_weights_change(blocks):
    import torch

    model = TwoTower(**TINY).fit(blocks, epochs=2)
    first = model.item_embeddings()
    assert model.item_embeddings() is first and not first.flags.writeable  # kept, read-only
    users = np.arange(4)
    assert model.fold_in(blocks).item_embeddings() is first  # a fold-in copy shares the network
    with torch.no_grad():  # as an optimizer step: the weights change in place
        for weights in model.net_.parameters():
            weights.mul_(1.5)
    changed = model.item_embeddings()
    assert changed is not first and not np.allclose(changed, first)
    np.testing.assert_allclose(model.score(users), model.user_embeddings(users) @ changed.T, rtol=1e-5, atol=1e-5)
    import pickle

    loaded = pickle.loads(pickle.dumps(model))
    assert "_item_vectors" not in vars(loaded)
    np.testing.assert_array_equal(loaded.item_embeddings(), changed)
