"""A conformance mixin for any ``Recommender``: three lines of tests per new model.

    class TestMyModel(RecommenderConformance):
        def make(self):
            return MyModel(seed=0)

``two_blocks`` data: users of block A only ever touched items of block A, so a model that learns
anything personal must recommend block-A items to block-A users (and block B to block B).
"""

from __future__ import annotations

import numpy as np
from .eval_fixtures import two_blocks

from training.recommender import Recommender, recommend


class RecommenderConformance:
    personalized = True  # False for models that ignore the user (popularity)

    def make(self) -> Recommender:
        raise NotImplementedError

    def test_is_a_recommender(self):
        model = self.make()
        assert isinstance(model, Recommender)
        assert isinstance(model.name, str) and model.name

    def test_score_shape_and_dtype(self):
        data = two_blocks()
        model = self.make().fit(data)
        scores = model.score(np.array([0, 3, 39]))
        assert scores.shape == (3, data.n_items)
        assert scores.dtype == np.float32
        assert np.all(np.isfinite(scores))

    def test_recommendations_stay_in_the_users_block(self):
        if not self.personalized:
            return
        data = two_blocks()
        model = self.make().fit(data)
        users = np.arange(data.n_users)
        top = recommend(model, users, 2, data.matrix())
        in_a = top < data.n_items // 2
        assert in_a[: data.n_users // 2].all()
        assert not in_a[data.n_users // 2 :].any()

    def test_fit_is_deterministic(self):
        data = two_blocks()
        users = np.arange(data.n_users)
        a = self.make().fit(data).score(users)
        b = self.make().fit(data).score(users)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
