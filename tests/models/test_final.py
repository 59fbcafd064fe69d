"""PathwaysFinal end to end on the successor world; the union and point-in-time features."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.conftest import make_interactions
from training.models import FINAL_MODEL, MODELS, FinalConfig, PathwaysFinal
from training.models.candidate_features import CandidateFeaturizer, top_n_excluding, union_candidates
from training.models.final import NOT_CANDIDATE
from training.models.sasrec import SASRecConfig
from training.models.two_tower import TwoTowerConfig
from training.recommender import Recommender, recommend

TINY = FinalConfig(
    sasrec=SASRecConfig(dim=16, n_heads=1, lr=1e-2, max_epochs=20, eval_every=5, patience=100),
    two_tower=TwoTowerConfig(dim=16, batch_size=64, max_epochs=4, eval_every=2),
    generators=("sasrec", "item_knn_recent", "als", "popularity"),
    per_generator=5,
    budget=8,
    valid_k=1,
)


@pytest.fixture(scope="module")
def fitted():
    from tests.models.conftest import successor_data

    data = successor_data()
    return data, PathwaysFinal(TINY).fit(data)


def test_registry_names_the_final_model():
    assert FINAL_MODEL == "pathways_final" and MODELS[FINAL_MODEL] is PathwaysFinal
    assert all(isinstance(factory(), Recommender) for factory in MODELS.values())


def test_top_row_predicts_the_next_title(fitted):
    data, model = fitted
    top = recommend(model, np.arange(data.n_users), 1, data.matrix())[:, 0]
    expected = np.array([(s[-1] + 1) % data.n_items for s in data.sequences()])
    assert (top == expected).mean() >= 0.8
    assert model.valid_candidate_recall_ > 0.8


def test_scores_cover_only_unwatched_candidates(fitted):
    data, model = fitted
    users = np.arange(10)
    scores = model.score(users)
    assert scores.shape == (10, data.n_items) and scores.dtype == np.float32
    items, _ = model.candidates(users)
    watched = data.matrix()
    for row, u in enumerate(users):
        cands = items[row][items[row] >= 0]
        assert not set(cands) & set(watched[u].indices)
        outside = np.setdiff1d(np.arange(data.n_items), cands)
        assert (scores[row, outside] == NOT_CANDIDATE).all() and (scores[row, cands] > NOT_CANDIDATE).all()


def test_seeded_determinism(fitted):
    data, model = fitted
    again = PathwaysFinal(TINY).fit(data)
    np.testing.assert_array_equal(model.score(np.arange(6)), again.score(np.arange(6)))


def test_union_orders_by_best_rank_and_excludes_history():
    a = top_n_excluding(np.array([[5.0, 4.0, 3.0, 2.0, 1.0]]), [np.array([0])], 2)
    b = top_n_excluding(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]), [np.array([0])], 2)
    assert a.tolist() == [[1, 2]] and b.tolist() == [[4, 3]]  # item 0 watched
    assert union_candidates([a, b], 5, budget=4).tolist() == [[1, 4, 2, 3]]  # by best rank, then order
    assert union_candidates([a, b], 5, budget=6).tolist() == [[1, 4, 2, 3, -1, -1]]
    assert top_n_excluding(np.ones((1, 3)), [np.array([0, 1])], 3).tolist() == [[2, -1, -1]]


def test_item_counts_are_point_in_time():
    # user 0's last event is at t=10; item 1 is watched by others at t=5 and at t=50 (the future)
    data = make_interactions([0, 1, 2, 0], [0, 1, 1, 2], 3, 3, [1, 5, 50, 10])
    feats = CandidateFeaturizer(data).features(np.array([0]), np.array([[1, 2]]), [np.zeros((1, 3), np.float32)])
    total_col = 3  # after the generator's (score, z, log rank)
    np.testing.assert_allclose(feats[0, :, total_col], np.log1p([1.0, 1.0]))


def test_bad_config():
    with pytest.raises(ValueError, match="generators"):
        FinalConfig(generators=("sasrec", "nope"))
    with pytest.raises(ValueError, match="ranker"):
        FinalConfig(ranker="pointwise")


def test_eval_models_take_genres_from_the_context():
    from training.evaluation.registry import EvalContext, final_model_name, model_specs
    from training.models import EVAL_MODELS

    ctx = EvalContext(item_genres=[["Drama"], ["Comedy", "Drama"], []], seed=4)
    final = EVAL_MODELS[FINAL_MODEL](ctx)
    assert final.item_features.shape == (3, 2) and final.config.seed == 4
    assert EVAL_MODELS["two_tower"](EvalContext()).item_features is None
    assert final_model_name() == FINAL_MODEL and model_specs()[FINAL_MODEL].kind == "model"


def test_save_load_parity(fitted, tmp_path):
    data, model = fitted
    model.save(tmp_path / "final.pkl")
    loaded = PathwaysFinal.load(tmp_path / "final.pkl")
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(model.score(users), loaded.score(users))
    with pytest.raises(ValueError, match="fit before save"):
        PathwaysFinal(TINY).save(tmp_path / "unfit.pkl")


def test_genre_match_is_the_cosine_with_the_users_recent_profile():
    data = make_interactions([0, 0, 1], [0, 1, 2], 2, 3, [1, 2, 3])
    genres = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    feats = CandidateFeaturizer(data, genres).features(np.array([0]), np.array([[2, 0]]), [np.zeros((1, 3), np.float32)])
    np.testing.assert_allclose(feats[0, :, -1], [0.0, 1.0], atol=1e-6)
    assert feats.shape == (1, 2, 3 + 8 + 1)  # per generator 3, item/user context 8, genre match 1
