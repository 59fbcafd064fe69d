"""Fold-in: a fitted model scores users it never trained on from their histories, as its own
inference does (parity with the fit-time users, block equals single)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.conftest import successor_data
from tests.models.test_final import TINY
from training.models import PathwaysFinal
from training.recommender import FoldIn, Interactions
from training.registry import BuildContext, build


def _users(data: Interactions, keep: np.ndarray) -> Interactions:
    """``data``'s rows of the users ``keep`` (sorted), re-indexed 0..len(keep)-1."""
    mask = np.isin(data.users, keep)
    return Interactions(np.searchsorted(keep, data.users[mask]), data.items[mask], data.timestamps[mask], len(keep),
                        data.n_items, None if data.weights is None else data.weights[mask])


@pytest.mark.parametrize("name, overrides", [
    ("ease", {}), ("ease", {"solver": "cholesky", "min_count": 1}), ("item_knn", {}), ("item_knn_recent", {}),
    ("popularity", {}), ("sasrec", {}), ("two_tower", {}),
])
def test_folding_in_the_fit_time_histories_gives_the_fitted_scores(name, overrides):
    data = successor_data(n_users=20 if overrides else 60)  # 20 users < 30 items: EASE's user-side solver
    model = build(name, BuildContext(models=TINY, seed=3))
    for key, value in overrides.items():
        model.config = model.config.model_copy(update={key: value})
    model.fit(data)
    assert isinstance(model, FoldIn)
    users = np.array([5, 0, 11])
    folded = model.fold_in(_users(data, np.sort(users)))
    np.testing.assert_allclose(folded.score(np.array([1, 0, 2])), model.score(users), rtol=1e-4, atol=1e-4)
    if name == "ease" and overrides:
        assert model.mode_ == "user"


def test_als_fold_in_solves_each_user_against_the_item_factors():
    data = successor_data()
    data = Interactions(data.users, data.items, data.timestamps, data.n_users, data.n_items,
                        weights=np.linspace(0.1, 1.0, len(data), dtype=np.float32))
    model = build("als", BuildContext(models=TINY, seed=3))
    model.config = model.config.model_copy(update={"weighting": "confidence", "alpha": 2.0})
    model.fit(data)
    folded = model.fold_in(data)
    np.testing.assert_array_equal(folded.item_factors_, model.item_factors_)
    # Each user's factors are the exact solution of (Y'C_uY + reg I) x = Y'C_u p_u (Hu et al.).
    y, conf, reg = model.item_factors_.astype(np.float64), model._matrix(data), model.config.regularization
    for u in (0, 7, 59):
        items, c = conf.indices[conf.indptr[u]:conf.indptr[u + 1]], conf.data[conf.indptr[u]:conf.indptr[u + 1]]
        a = y.T @ y + reg * np.eye(y.shape[1]) + (y[items].T * (c - 1.0)) @ y[items]
        np.testing.assert_allclose(folded.user_factors_[u], np.linalg.solve(a, y[items].T @ c), rtol=1e-3, atol=1e-4)
    # Close to the fitted users (whose last update came before the last item update).
    fitted, again = model.user_factors_, folded.user_factors_
    cos = (again * fitted).sum(1) / np.linalg.norm(again, axis=1) / np.linalg.norm(fitted, axis=1)
    assert cos.min() > 0.9
    # Block equals single: user 7 folded in alone gets the factors it gets among all.
    alone = model.fold_in(_users(data, np.array([7])))
    np.testing.assert_allclose(alone.user_factors_[0], folded.user_factors_[7], rtol=1e-5, atol=1e-6)


def test_top_row_folds_in_unseen_users_block_or_single_alike():
    data = successor_data(n_users=80)
    trained, unseen = np.arange(60), np.arange(60, 80)
    model = PathwaysFinal(TINY).fit(_users(data, trained))
    block = model.fold_in(_users(data, unseen))
    items, scores = block.candidates(np.arange(len(unseen)))
    assert (items[:, 0] >= 0).all()  # every unseen user gets a ranked list
    for row, user in ((0, 60), (13, 73)):
        alone_items, alone_scores = model.fold_in(_users(data, np.array([user]))).candidates(np.array([0]))
        np.testing.assert_array_equal(alone_items[0], items[row])
        np.testing.assert_allclose(alone_scores[0], scores[row], rtol=1e-5, atol=1e-6)
    # The successor world: the top title of an unseen user is the one after its last.
    last = np.array([data.items[data.users == u][-1] for u in unseen])
    assert (items[:, 0] == (last + 1) % data.n_items).mean() > 0.5
    # The fitted model itself is unchanged.
    assert model.generators_["sasrec"].sequences_ is not block.generators_["sasrec"].sequences_
    assert len(model.featurizer_.sequences) == 60


def test_a_model_without_fold_in_is_named():
    data = successor_data()
    model = PathwaysFinal(TINY.model_copy(update={"final": TINY.final.model_copy(
        update={"generators": ("bpr", "popularity")})})).fit(data)
    with pytest.raises(TypeError, match="generator bpr cannot fold in"):
        model.fold_in(data)
