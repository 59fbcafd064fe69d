"""Every registered model passes one conformance suite: the ``Recommender`` contract on tiny data.

Settings come from one tiny ``ModelsConfig`` (so the suite runs in seconds); the data are two
disjoint blocks (``two_blocks``): users of block A only ever touched items of block A, so a model
that learns anything personal must recommend block-A items to block-A users (and B to B).
"""

from __future__ import annotations

import numpy as np
import pytest

from pathways.models_config import (
    ALSConfig,
    BPRConfig,
    EASEConfig,
    FinalConfig,
    ItemKNNConfig,
    ModelsConfig,
    SASRecConfig,
    TwoTowerConfig,
)  # fmt: skip
from tests.evaluation.eval_fixtures import two_blocks
from training.models.base import ConfiguredModel
from training.recommender import Recommender, recommend
from training.registry import REGISTRY, BuildContext, build

TINY = ModelsConfig(
    item_knn=ItemKNNConfig(k=5, shrink=1.0, block=4),  # several blocks on 20 items
    item_knn_recent=ItemKNNConfig(k=5, shrink=1.0, block=4, recency_half_life=2.0),
    ease=EASEConfig(l2=5.0),
    als=ALSConfig(factors=2, iterations=15, regularization=0.1, alpha=5.0),
    bpr=BPRConfig(factors=8, iterations=200, learning_rate=0.05),
    sasrec=SASRecConfig(dim=16, n_heads=1, lr=1e-2, max_epochs=30, eval_every=5, patience=2, valid_k=1),
    two_tower=TwoTowerConfig(dim=16, batch_size=64, lr=1e-2, temperature=0.1, max_epochs=20, eval_every=5, valid_k=1),
    final=FinalConfig(valid_k=1, per_generator=6, budget=10),
)
NAMES = list(REGISTRY)
UNPERSONALIZED = {"popularity"}
GENRES = [["a"] if i < 10 else ["b"] for i in range(20)]  # item side information, used by those that take it


def _fit(name: str, seed: int = 1) -> Recommender:
    ctx = BuildContext(models=TINY, seed=seed, item_genres=GENRES)
    return build(name, ctx).fit(two_blocks(), item_features=ctx.item_features())


@pytest.fixture(scope="module", params=NAMES)
def fitted(request: pytest.FixtureRequest) -> tuple[str, Recommender]:
    return request.param, _fit(request.param)


def test_the_registry_spells_every_name_once():
    assert NAMES == ["popularity", "item_knn", "ease", "als", "bpr", "sasrec", "two_tower", "item_knn_recent",
                     "pathways_final"]  # fmt: skip
    assert set(NAMES) - {"pathways_final"} | {"final"} <= set(ModelsConfig.model_fields)  # each has its section


def test_is_a_recommender_named_as_registered(fitted):
    name, model = fitted
    assert isinstance(model, Recommender) and model.name == name


def test_score_shape_dtype_and_finite(fitted):
    name, model = fitted
    scores = model.score(np.array([0, 3, 39]))
    assert scores.shape == (3, two_blocks().n_items) and scores.dtype == np.float32
    assert np.all(np.isfinite(scores))


def test_batch_equals_single(fitted):
    name, model = fitted
    np.testing.assert_allclose(model.score(np.array([0, 7, 30]))[1], model.score(np.array([7]))[0], rtol=1e-5, atol=1e-5)


def test_fit_is_deterministic_for_a_seed(fitted):
    name, model = fitted
    users = np.arange(two_blocks().n_users)
    np.testing.assert_allclose(_fit(name).score(users), model.score(users), rtol=1e-5, atol=1e-6)


def test_save_then_load_gives_identical_scores(fitted, tmp_path):
    name, model = fitted
    model.save(tmp_path / name)
    loaded = type(model).load(tmp_path / name)
    users = np.arange(two_blocks().n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert loaded.name == model.name


def test_save_before_fit_is_an_error(tmp_path):
    for name in NAMES:
        with pytest.raises(ValueError, match="fit before save"):
            build(name, BuildContext(models=TINY)).save(tmp_path / name)


def test_recommend_excludes_train_items(fitted):
    name, model = fitted
    data = two_blocks()
    users = np.arange(data.n_users)
    top = recommend(model, users, 5, data.matrix())
    train = data.matrix()
    assert not any(train[u, i] for u, row in zip(users, top) for i in row)


def test_recommendations_stay_in_the_users_block(fitted):
    name, model = fitted
    data = two_blocks()
    top = recommend(model, np.arange(data.n_users), 2, data.matrix())
    in_a = top < data.n_items // 2
    if name in UNPERSONALIZED:  # the same list for everyone: the most popular unseen items
        counts = np.asarray(data.matrix().sum(axis=0)).ravel()
        assert counts[top[:, 0]].min() >= np.median(counts)
        return
    assert in_a[: data.n_users // 2].all()
    assert not in_a[data.n_users // 2 :].any()


def test_models_take_their_section_and_reject_unknown_settings():
    for name in ("popularity", "item_knn", "ease", "als", "bpr", "sasrec", "two_tower"):
        cls = type(build(name, BuildContext()))
        assert issubclass(cls, ConfiguredModel)
        assert build(name, BuildContext(models=TINY)).config == getattr(TINY, name)
        with pytest.raises(ValueError, match="Extra inputs are not permitted"):
            cls(no_such_setting=1)


def test_model_settings_are_reachable_from_the_config_and_validated():
    from pathways.config import ConfigError, PathwaysConfig

    config = PathwaysConfig().with_overrides({"models.sasrec.dim": 32, "models.final.budget": 50})
    ctx = BuildContext(models=config.models, seed=3)
    assert build("sasrec", ctx).config.dim == 32 and build("pathways_final", ctx).config.final.budget == 50
    assert PathwaysConfig().models.final.ease.solver == "inverse"  # the top row's own EASE
    with pytest.raises(ConfigError, match="unknown config key 'models.ease.lambda'"):
        PathwaysConfig().with_overrides({"models.ease.lambda": 1.0})
    with pytest.raises(ConfigError, match="models.sasrec"):
        PathwaysConfig().with_overrides({"models.sasrec.n_heads": 3})  # 64 is not divisible by 3
