"""PathwaysFinal end to end on the successor world; the union and point-in-time features."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from pathways.models_config import FinalConfig, ModelsConfig, SASRecConfig, TwoTowerConfig
from tests.models.conftest import make_interactions
from training.models import PathwaysFinal
from training.models.candidate_features import CandidateFeaturizer
from training.models.final import NOT_CANDIDATE
from training.recommender import recommend, top_k_excluding, union_candidates
from training.registry import FINAL_MODEL, REGISTRY, BuildContext

TINY = ModelsConfig(
    sasrec=SASRecConfig(dim=16, n_heads=1, lr=1e-2, max_epochs=20, eval_every=5, patience=100),
    two_tower=TwoTowerConfig(dim=16, batch_size=64, max_epochs=4, eval_every=2),
    final=FinalConfig(generators=("sasrec", "item_knn_recent", "als", "popularity"), per_generator=5, budget=8, valid_k=1),
)


@pytest.fixture(scope="module")
def fitted():
    from tests.models.conftest import successor_data

    data = successor_data()
    return data, PathwaysFinal(TINY).fit(data)


def test_registry_names_the_final_model():
    assert FINAL_MODEL == "pathways_final" and REGISTRY[FINAL_MODEL].kind == "model"
    model = REGISTRY[FINAL_MODEL].build({}, BuildContext(models=TINY, seed=4))
    assert isinstance(model, PathwaysFinal) and model.seed == 4 and model.config == TINY


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
    seen = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 5))  # item 0 watched
    rows = np.array([0])
    a = top_k_excluding(np.array([[5.0, 4.0, 3.0, 2.0, 1.0]], np.float32), rows, seen, 2, pad=True)
    b = top_k_excluding(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], np.float32), rows, seen, 2, pad=True)
    assert a.tolist() == [[1, 2]] and b.tolist() == [[4, 3]]
    assert union_candidates([a, b], 5, budget=4).tolist() == [[1, 4, 2, 3]]  # by best rank, then order
    assert union_candidates([a, b], 5, budget=6).tolist() == [[1, 4, 2, 3, -1, -1]]
    two_seen = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 1])), shape=(1, 3))
    assert top_k_excluding(np.ones((1, 3), np.float32), rows, two_seen, 3, pad=True).tolist() == [[2, -1, -1]]


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
    with pytest.raises(ValueError, match="budget"):
        PathwaysFinal(TINY, budget=0)


def test_harness_build_passes_genres_at_fit_and_the_seed():
    ctx = BuildContext(item_genres=[["Drama"], ["Comedy", "Drama"], []], seed=4)
    assert ctx.item_features().shape == (3, 2) and BuildContext().item_features() is None
    final = REGISTRY[FINAL_MODEL].build({}, ctx)
    assert final.seed == 4 and final.get_params()["seed"] == 4


def test_save_load_parity(fitted, tmp_path):
    data, model = fitted
    model.save(tmp_path / "final.pkl")
    loaded = PathwaysFinal.load(tmp_path / "final.pkl")
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(model.score(users), loaded.score(users))
    with pytest.raises(ValueError, match="fit before save"):
        PathwaysFinal(TINY).save(tmp_path / "unfit.pkl")


def test_a_model_pickled_before_a_setting_existed_loads_with_its_default(fitted, tmp_path):
    data, model = fitted
    old = copy.deepcopy(model)
    del old.config.final.__dict__["score_chunk"]  # as pickled by a version without the setting
    old.save(tmp_path / "old.pkl")
    loaded = PathwaysFinal.load(tmp_path / "old.pkl")
    assert loaded.config.final.score_chunk == FinalConfig().score_chunk
    np.testing.assert_array_equal(loaded.score(np.arange(data.n_users)), model.score(np.arange(data.n_users)))


def test_genre_match_is_the_cosine_with_the_users_recent_profile():
    data = make_interactions([0, 0, 1], [0, 1, 2], 2, 3, [1, 2, 3])
    genres = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    feats = CandidateFeaturizer(data, genres).features(np.array([0]), np.array([[2, 0]]), [np.zeros((1, 3), np.float32)])
    np.testing.assert_allclose(feats[0, :, -1], [0.0, 1.0], atol=1e-6)
    assert feats.shape == (1, 2, 3 + 8 + 1)  # per generator 3, item/user context 8, genre match 1


@pytest.mark.parametrize("span_s", [86_400 * 90, 2**33])  # keyed search; a span too wide for it: item by item
def test_counts_up_to_a_moment_are_each_items_interactions_at_or_before_it(span_s):
    import pickle

    rng = np.random.default_rng(11)
    n = 400
    ts = 1_700_000_000 + rng.integers(0, span_s, n)
    ts[:40] = ts[40:80]  # ties in time
    data = make_interactions(rng.integers(0, 30, n), rng.integers(0, 12, n), 30, 13, ts)  # item 12: never seen
    featurizer = CandidateFeaturizer(data)
    items = rng.integers(0, 13, (30, 9))
    moments = np.r_[ts.min() - 5, ts.max() + 5, ts[:28]]  # before all, after all, exactly at some
    expected = np.array([[np.sum((data.items == i) & (data.timestamps <= t)) for i in row] for row, t in zip(items, moments)])
    np.testing.assert_array_equal(featurizer._counts_upto(items, [moments])[0], expected)
    assert (featurizer._item_ts_keys is None) == (span_s > 2**32)
    loaded = pickle.loads(pickle.dumps(featurizer))
    assert "_item_ts_keys" not in vars(loaded)  # derived, rebuilt on first use
    np.testing.assert_array_equal(loaded._counts_upto(items, [moments])[0], expected)
    # moments a window earlier, searched in the order of the needles for ``moments`` (features()
    # sorts once for the three counts): the same counts, also where the window runs before the data
    for w in (1.5, 3_600.0, 86_400.0 * 30, float(span_s)):
        earlier = (moments - w).astype(np.int64)
        by_definition = np.array([[np.sum((data.items == i) & (data.timestamps <= t)) for i in row] for row, t in zip(items, earlier)])
        np.testing.assert_array_equal(featurizer._counts_upto(items, [moments, earlier])[1], by_definition)
