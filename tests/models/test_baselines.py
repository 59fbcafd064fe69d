"""What each light model must get exactly right, beyond the shared conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from pathways.models_config import ModelsConfig
from tests.evaluation.eval_fixtures import make_interactions, two_blocks
from training.models import ALS, EASE, ItemKNN, Popularity


def test_popularity_counts_users_or_interactions():
    data = make_interactions([(0, 1, 0), (1, 1, 0), (1, 2, 0), (1, 2, 5)], 2, 4)
    assert Popularity().fit(data).score(np.array([0])).tolist() == [[0.0, 2.0, 1.0, 0.0]]
    top_row = Popularity(ModelsConfig().final.popularity).fit(data).score(np.array([0, 1]))
    np.testing.assert_allclose(top_row, np.log1p([[0, 2, 2, 0]] * 2))


def test_item_knn_similarity_is_shrunk_cosine():
    # items 0 and 1 share users 0 and 1; item 0 also has user 2.
    data = make_interactions([(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0), (2, 0, 0)], 3, 2)
    sim = ItemKNN(k=5, shrink=1.0).fit(data).similarity_.toarray()
    assert sim[0, 1] == pytest.approx(2 / (np.sqrt(3) * np.sqrt(2) + 1.0), rel=1e-5)
    assert sim[0, 0] == 0.0


def test_item_knn_keeps_k_neighbours_per_item():
    sim = ItemKNN(k=3).fit(two_blocks()).similarity_
    assert np.diff(sim.tocsc().indptr).max() <= 3


def test_item_knn_recent_weighs_the_latest_items_most():
    # user 0 watched 0, 1, 2 in that order; with half-life 1 the weights are 0.25, 0.5, 1
    data = make_interactions([(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 0, 1)], 2, 3)
    history = ItemKNN(ModelsConfig().item_knn_recent, recency_half_life=1.0).fit(data).history_.toarray()
    np.testing.assert_allclose(history[0], [0.25, 0.5, 1.0])
    assert ModelsConfig().item_knn_recent.recency_half_life == 10.0


@pytest.mark.parametrize("solver", ["cholesky", "inverse"])
@pytest.mark.parametrize("n_users", [8, 30])  # fewer users than items (dual form) and more (primal)
def test_ease_solvers_match_the_closed_form(n_users, solver):
    rng = np.random.default_rng(3)
    x = (rng.random((n_users, 12)) < 0.4).astype(np.float64)
    rows, cols = np.nonzero(x)
    data = make_interactions(list(zip(rows.tolist(), cols.tolist(), [0] * len(rows))), n_users, 12)
    model = EASE(l2=3.0, solver=solver).fit(data)
    assert model.mode_ == ("user" if n_users < 12 and solver == "cholesky" else "item")
    active = x.sum(axis=0) > 0
    p = np.linalg.inv(x[:, active].T @ x[:, active] + 3.0 * np.eye(active.sum()))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    expected = np.zeros((n_users, 12))
    expected[:, active] = x[:, active] @ b
    np.testing.assert_allclose(model.score(np.arange(n_users)), expected, rtol=1e-3, atol=1e-4)


def test_ease_min_count_leaves_rare_items_out():
    data = make_interactions([(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 2, 0), (2, 2, 0)], 3, 3)
    model = EASE(l2=1.0, min_count=2).fit(data)
    assert model.items_.tolist() == [0, 2] and (model.score(np.arange(3))[:, 1] == 0).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"l2": 0}, "l2\n  Input should be greater than 0"),
    ({"solver": "qr"}, "solver\n  Input should be 'cholesky' or 'inverse'"),
])  # fmt: skip
def test_ease_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EASE(**kwargs)


def test_als_rejects_unknown_weighting():
    with pytest.raises(ValueError, match="weighting\n  Input should be 'none', 'bm25', 'tfidf' or 'confidence'"):
        ALS(weighting="log")


def test_als_confidence_weighting_sums_weights_per_pair():
    data = make_interactions([(0, 0, 0), (0, 0, 1), (1, 1, 0)], 2, 2)
    data = type(data)(**{**data.__dict__, "weights": np.array([0.5, 0.25, 0.0], np.float32)})
    matrix = ALS(weighting="confidence", alpha=20.0)._matrix(data)
    np.testing.assert_allclose(matrix.toarray(), [[16.0, 0.0], [0.0, 1.0]])
    assert matrix.nnz == 2  # a pair with weight 0 is still a seen pair (confidence 1)
