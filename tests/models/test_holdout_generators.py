"""leave_last_k and metrics on hand-checked cases; light generators on block data."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.conftest import make_interactions
from training.models.generators import ALS, EASE, ItemKNN, Popularity
from training.models.holdout import leave_last_k, ranking_metrics


def test_leave_last_k_orders_by_time_then_item_and_keeps_short_users():
    # user 0: items 5,3,4 at t=1 (tie -> ordered by item: 3,4,5), then 1 at t=2; user 1 has 2 items
    data = make_interactions([0, 0, 0, 0, 1, 1], [5, 3, 4, 1, 2, 0], 2, 6, [1, 1, 1, 2, 7, 8])
    train, held = leave_last_k(data, 2)
    assert sorted(held.items.tolist()) == [1, 5]
    assert sorted(train.items.tolist()) == [0, 2, 3, 4]  # user 1 needs k + 1 = 3 to give any
    assert train.n_items == held.n_items == 6
    with pytest.raises(ValueError, match="k must"):
        leave_last_k(data, 0)


def test_ranking_metrics_known_values():
    held = make_interactions([0, 0, 1], [1, 2, 3], 2, 5)
    topk = np.array([[1, 0, 2], [0, 4, 2]])
    m = ranking_metrics(topk, np.array([0, 1]), held, 3)
    ndcg0 = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert m["ndcg@3"] == pytest.approx(ndcg0 / 2)
    assert m["recall@3"] == pytest.approx(0.5)


@pytest.mark.parametrize("model", [ItemKNN(neighbors=5), ItemKNN(recency_half_life=2.0), EASE(l2=1.0, min_count=1), ALS(factors=4, iterations=5)])
def test_generators_stay_inside_the_users_block(blocks, model):
    scores = model.fit(blocks).score(np.arange(blocks.n_users))
    assert scores.shape == (blocks.n_users, blocks.n_items)
    half = blocks.n_items // 2
    assert (scores[0::2, :half].mean(1) > scores[0::2, half:].mean(1)).all()
    assert (scores[1::2, half:].mean(1) > scores[1::2, :half].mean(1)).all()


def test_popularity_counts():
    data = make_interactions([0, 1, 1, 2], [2, 2, 0, 2], 3, 3)
    scores = Popularity().fit(data).score(np.array([0, 1]))
    np.testing.assert_allclose(scores[0], np.log1p([1, 0, 3]))
