"""Every baseline passes the Recommender conformance suite; plus what each must get exactly right."""

from __future__ import annotations

import numpy as np
import pytest
from .eval_fixtures import make_interactions, two_blocks
from .recommender_conformance import RecommenderConformance

from training.baselines import ALS, BPR, EASE, ItemKNN, Popularity


class TestPopularity(RecommenderConformance):
    personalized = False

    def make(self):
        return Popularity()

    def test_scores_are_user_counts(self):
        data = make_interactions([(0, 1, 0), (1, 1, 0), (1, 2, 0)], 2, 4)
        assert Popularity().fit(data).score(np.array([0])).tolist() == [[0.0, 2.0, 1.0, 0.0]]


class TestItemKNN(RecommenderConformance):
    def make(self):
        return ItemKNN(k=5, shrink=1.0, block=4)  # several blocks on 20 items

    def test_similarity_is_shrunk_cosine(self):
        # items 0 and 1 share users 0 and 1; item 0 also has user 2.
        data = make_interactions([(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0), (2, 0, 0)], 3, 2)
        sim = ItemKNN(k=5, shrink=1.0).fit(data).similarity_.toarray()
        assert sim[0, 1] == pytest.approx(2 / (np.sqrt(3) * np.sqrt(2) + 1.0), rel=1e-5)
        assert sim[0, 0] == 0.0

    def test_keeps_k_neighbours_per_item(self):
        sim = ItemKNN(k=3).fit(two_blocks()).similarity_
        assert np.diff(sim.tocsc().indptr).max() <= 3


class TestEASE(RecommenderConformance):
    def make(self):
        return EASE(l2=5.0)

    @pytest.mark.parametrize("n_users", [8, 30])  # fewer users than items (dual form) and more (primal)
    def test_both_forms_match_the_closed_form(self, n_users):
        rng = np.random.default_rng(3)
        x = (rng.random((n_users, 12)) < 0.4).astype(np.float64)
        rows, cols = np.nonzero(x)
        data = make_interactions(list(zip(rows.tolist(), cols.tolist(), [0] * len(rows))), n_users, 12)
        model = EASE(l2=3.0).fit(data)
        assert model.mode_ == ("user" if n_users < 12 else "item")
        active = x.sum(axis=0) > 0
        p = np.linalg.inv(x[:, active].T @ x[:, active] + 3.0 * np.eye(active.sum()))
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        expected = np.zeros((n_users, 12))
        expected[:, active] = x[:, active] @ b
        np.testing.assert_allclose(model.score(np.arange(n_users)), expected, rtol=1e-3, atol=1e-4)

    def test_rejects_bad_l2(self):
        with pytest.raises(ValueError, match="l2 must be > 0"):
            EASE(l2=0).fit(two_blocks())


class TestALS(RecommenderConformance):
    def make(self):
        return ALS(factors=2, iterations=15, regularization=0.1, alpha=5.0, seed=1)

    def test_rejects_unknown_weighting(self):
        with pytest.raises(ValueError, match="weighting must be one of"):
            ALS(weighting="log").fit(two_blocks())


class TestALSUnweighted(RecommenderConformance):
    def make(self):
        return ALS(factors=2, iterations=15, weighting="none", seed=1)


class TestBPR(RecommenderConformance):
    def make(self):
        return BPR(factors=8, iterations=200, learning_rate=0.05, seed=1)
