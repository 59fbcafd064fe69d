"""ArmFeaturizer: the per-arm feature layout, and the replayable decision generator."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.features import KINDS, ArmFeaturizer
from bandits.rng import decision_rng

NAMES = ("genre:Comedy", "mood:dark", "cast:*")


@pytest.fixture
def fz() -> ArmFeaturizer:
    themes = [["genre:Comedy", "cast:Ann", "mood:dark"], ["mood:dark", "genre:Horror"], ["other:x", "cast:Bo", "genre:Comedy", "mood:dark"]]
    return ArmFeaturizer.build(NAMES, np.array([30, 10, 20]), themes)


def test_layout_maps_themes_to_slots_and_kinds(fz):
    ctx = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    x = fz.transform(ctx, np.array([30, 10]))
    assert x.shape == (2, 4, 2 * len(NAMES) + len(KINDS))
    s = len(NAMES)
    # title 30, arm 1 = "cast:Ann" -> slot cast:* (2): value 2.0, slot flag, kind cast
    np.testing.assert_array_equal(np.nonzero(x[0, 1])[0], [2, s + 2, 2 * s + KINDS.index("cast")])
    assert x[0, 1, 2] == 2.0
    # title 10, arm 1 = "genre:Horror": not a context slot, only its kind is known
    np.testing.assert_array_equal(np.nonzero(x[1, 1])[0], [2 * s + KINDS.index("genre")])
    assert not x[1, 2:].any()  # padded arms are all zero


def test_batch_context_equals_broadcast_context(fz):
    ctx = np.array([[0.1, 0.2, 0.3]] * 3, dtype=np.float32)
    titles = np.array([10, 20, 30])
    np.testing.assert_array_equal(fz.transform(ctx, titles), fz.transform(ctx[0], titles))


def test_chosen_features_and_arm_counts(fz):
    ctx = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    titles, arms = np.array([20, 30, 10]), np.array([3, 0, 1])
    full = fz.transform(ctx, titles)
    np.testing.assert_array_equal(fz.transform_chosen(ctx, titles, arms), full[np.arange(3), arms])
    np.testing.assert_array_equal(fz.n_arms(np.array([10, 20, 30, 99])), [2, 4, 3, 0])


def test_save_load_round_trip(fz, tmp_path):
    back = ArmFeaturizer.load(fz.save(tmp_path / "fz.npz"))
    assert back.context_names == fz.context_names
    ctx = np.ones(3, dtype=np.float32)
    np.testing.assert_array_equal(back.transform(ctx, np.array([10, 30])), fz.transform(ctx, np.array([10, 30])))


@pytest.mark.parametrize(
    ("ctx", "titles", "match"),
    [
        (np.ones(2), np.array([10]), "context: expected"),
        (np.ones((2, 3)), np.array([10]), "context has 2 rows for 1 titles"),
        (np.ones(3), np.array([11]), "title_ids: unknown to the featurizer: \\[11\\]"),
    ],
)
def test_bad_transform_inputs(fz, ctx, titles, match):
    with pytest.raises(ValueError, match=match):
        fz.transform(ctx, titles)


def test_build_rejects_duplicates_and_empty_variants():
    with pytest.raises(ValueError, match="duplicates"):
        ArmFeaturizer.build(NAMES, np.array([1, 1]), [["genre:Comedy"], ["mood:dark"]])
    with pytest.raises(ValueError, match="at least one variant"):
        ArmFeaturizer.build(NAMES, np.array([1]), [[]])


def test_decision_rng_is_replayable_and_keyed():
    draw = lambda seed, profile, req: decision_rng(seed, profile, req).random(4)  # noqa: E731
    np.testing.assert_array_equal(draw(1, 5, "a"), draw(1, 5, "a"))
    assert not np.array_equal(draw(1, 5, "a"), draw(1, 5, "b"))
    assert not np.array_equal(draw(1, 5, "a"), draw(1, 6, "a"))
    assert not np.array_equal(draw(1, 5, "a"), draw(2, 5, "a"))
