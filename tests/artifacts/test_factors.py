"""FactorArtifacts: validated on construction, save -> load gives back the same arrays and id maps."""

from __future__ import annotations

import numpy as np
import pytest

from pathways.artifacts.factors import FACTORS, META, FactorArtifacts


def _factors() -> FactorArtifacts:
    rng = np.random.default_rng(0)
    return FactorArtifacts(rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), [7, 3, 9], [40, 10, 30, 20, 50],
                           params={"factors": 4, "fit_seconds": 0.5})


def test_save_load_round_trip(tmp_path) -> None:
    art = _factors()
    loaded = FactorArtifacts.load(art.save(tmp_path / "als"))
    assert sorted(p.name for p in (tmp_path / "als").iterdir()) == sorted([FACTORS, META])
    for name in ("user_factors", "item_factors", "profile_ids", "title_ids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(art, name))
        assert getattr(loaded, name).dtype == getattr(art, name).dtype
    assert loaded.params == art.params
    assert loaded.profile_row == {7: 0, 3: 1, 9: 2} and loaded.title_row == art.title_row
    assert loaded.n_factors == 4


def test_arrays_are_coerced_to_float32_and_int64() -> None:
    art = _factors()
    assert art.user_factors.dtype == np.float32 and art.item_factors.dtype == np.float32
    assert art.profile_ids.dtype == np.int64 and art.title_ids.dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_factors": np.zeros((2, 3)), "item_factors": np.zeros((4, 2))}, "equal width"),
        ({"user_factors": np.zeros((3, 2))}, "profile_ids has 2 ids for 3"),
        ({"title_ids": np.array([1, 2, 3])}, "title_ids has 3 ids for 4"),
        ({"title_ids": np.array([1, 1, 2, 3])}, "title_ids holds duplicate"),
        ({"profile_ids": np.array([5, 5])}, "profile_ids holds duplicate"),
        ({"item_factors": np.zeros(4)}, "2-d"),
    ],
)
def test_bad_artifacts_are_rejected(kwargs: dict, message: str) -> None:
    good = {"user_factors": np.zeros((2, 2)), "item_factors": np.zeros((4, 2)),
            "profile_ids": np.array([1, 2]), "title_ids": np.array([1, 2, 3, 4])}
    with pytest.raises(ValueError, match=message):
        FactorArtifacts(**{**good, **kwargs})


def test_load_missing_artifact_names_the_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        FactorArtifacts.load(tmp_path)
