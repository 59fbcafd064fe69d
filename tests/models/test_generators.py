"""leave_last_k on a hand-checked case; the top row's generators (as configured for it) on block data."""

from __future__ import annotations

import numpy as np
import pytest

from pathways.models_config import ModelsConfig
from tests.models.conftest import make_interactions
from training.evaluation.splits import leave_last_k
from training.models import ALS, EASE, ItemKNN, Popularity

FINAL = ModelsConfig().final


def test_leave_last_k_orders_by_time_then_item_and_keeps_short_users():
    # user 0: items 5,3,4 at t=1 (tie -> ordered by item: 3,4,5), then 1 at t=2; user 1 has 2 items
    data = make_interactions([0, 0, 0, 0, 1, 1], [5, 3, 4, 1, 2, 0], 2, 6, [1, 1, 1, 2, 7, 8])
    train, held = leave_last_k(data, 2)
    assert sorted(held.items.tolist()) == [1, 5]
    assert sorted(train.items.tolist()) == [0, 2, 3, 4]  # user 1 needs k + 1 = 3 to give any
    assert train.n_items == held.n_items == 6
    with pytest.raises(ValueError, match="k must"):
        leave_last_k(data, 0)


@pytest.mark.parametrize("model", [
    ItemKNN(k=5), ItemKNN(recency_half_life=2.0), EASE(FINAL.ease, l2=1.0, min_count=1), ALS(FINAL.als, factors=4, iterations=5),
])  # fmt: skip
def test_generators_stay_inside_the_users_block(blocks, model):
    scores = model.fit(blocks).score(np.arange(blocks.n_users))
    assert scores.shape == (blocks.n_users, blocks.n_items)
    half = blocks.n_items // 2
    assert (scores[0::2, :half].mean(1) > scores[0::2, half:].mean(1)).all()
    assert (scores[1::2, half:].mean(1) > scores[1::2, :half].mean(1)).all()


def test_top_row_popularity_is_log_interaction_counts():
    data = make_interactions([0, 1, 1, 2], [2, 2, 0, 2], 3, 3)
    scores = Popularity(FINAL.popularity).fit(data).score(np.array([0, 1]))
    np.testing.assert_allclose(scores[0], np.log1p([1, 0, 3]))


def test_top_row_generators_keep_their_old_settings():
    assert (FINAL.ease.min_count, FINAL.ease.solver) == (2, "inverse")
    assert (FINAL.als.weighting, FINAL.als.num_threads) == ("none", 1)
    assert (FINAL.popularity.count, FINAL.popularity.log1p) == ("interactions", True)
