"""The artwork policy's context: the nightly job and serving build the same vector for a profile."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bandits.features import artwork_context_names, genre_contexts
from serving.artwork import genre_context_fn, online_context_fn

GENRES = ["Comedy", "Drama", "Horror"]
AFFINITY = {1: [0.5, 0.25, 0.25], 2: None, 3: [1.0, 0.0], 4: np.array([0.0, 0.2, 0.8], np.float32)}  # 3: misshapen


def _nightly(profile_ids: list[int]) -> np.ndarray:
    """As ``pipelines.stages.artwork`` does it: a point-in-time join gives an object column
    (lists, arrays, NaN where the profile had no features), then ``genre_contexts``."""
    hist = pd.Series([AFFINITY[p] if AFFINITY[p] is not None else np.nan for p in profile_ids], dtype=object)
    return genre_contexts(hist.to_numpy(), GENRES, artwork_context_names(GENRES))


def test_nightly_and_serving_contexts_are_identical_for_the_same_profiles():
    pids = [1, 2, 3, 4, 1]
    names = artwork_context_names(GENRES)  # what the nightly featurizer stores, what serving is given
    served = online_context_fn(AFFINITY.get, GENRES, names)(np.array(pids, np.int64))
    nightly = _nightly(pids)
    assert served.dtype == nightly.dtype == np.float32 and served.shape == (5, 3)
    np.testing.assert_array_equal(served, nightly)
    np.testing.assert_array_equal(nightly[0], [0.5, 0.25, 0.25])
    np.testing.assert_array_equal(nightly[1:3], 0.0)  # no affinity, or the wrong length: the average member


def test_slots_are_matched_by_name_not_position():
    names = ("genre:Horror", "mood:dark", "genre:Comedy")
    got = online_context_fn(AFFINITY.get, GENRES, names)(np.array([1, 4], np.int64))
    np.testing.assert_allclose(got, [[0.25, 0.0, 0.5], [0.8, 0.0, 0.0]], rtol=1e-6)


def test_the_online_store_path_reads_genres_from_the_feature_repo(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "genres.json").write_text(json.dumps(GENRES))
    fn = genre_context_fn(tmp_path, artwork_context_names(GENRES))  # no online store there: unavailable
    np.testing.assert_array_equal(fn(np.array([1, 2], np.int64)), np.zeros((2, 3), np.float32))


def test_default_artwork_is_what_select_artwork_gives_without_a_policy() -> None:
    import numpy as np

    from pathways.catalog import Catalog
    from pathways.types import CompactRows, RowHeader
    from serving.artwork import default_artwork, select_artwork
    from serving.rows import TitleRenderer
    from tests.serving.snapshot_fixtures import titles_table

    renderer = TitleRenderer(Catalog.from_table(titles_table()))
    rows = CompactRows.build([RowHeader("a", "A", "s", ""), RowHeader("b", "B", "s", "")],
                             [np.array([3, 1, 40]), np.array([7, 999])], [np.ones(3), np.ones(2)])
    fast, slow = default_artwork(rows, renderer), select_artwork(rows, renderer, None, 1, "r")
    assert fast.artwork_ids.tolist() == slow.artwork_ids.tolist() == [30, 10, 400, 70, 0]
    assert fast.arms.tolist() == slow.arms.tolist() and fast.propensities.tolist() == slow.propensities.tolist()
    assert (fast.policy_version, fast.fallback_reason) == (slow.policy_version, slow.fallback_reason)


def test_the_page_read_features_give_the_same_context_as_the_nightly_job():
    from serving.artwork import features_context_fn

    names = artwork_context_names(GENRES)
    fn = features_context_fn(GENRES, names)
    served = np.stack([fn({"genre_affinity": AFFINITY[p]}) for p in (1, 2, 3, 4)])
    np.testing.assert_array_equal(served, _nightly([1, 2, 3, 4]))
    np.testing.assert_array_equal(fn({}), np.zeros(3, np.float32))  # the store was down: the average member


def test_contexts_in_blocks_are_the_contexts_of_one_call():
    from bandits.features import contexts_in_blocks

    pids = [1, 2, 3, 4, 1, 4, 2, 1, 3, 4, 4]
    asked: list[tuple[int, int]] = []

    def affinities(lo: int, hi: int) -> np.ndarray:
        asked.append((lo, hi))
        return pd.Series([AFFINITY[p] if AFFINITY[p] is not None else np.nan for p in pids[lo:hi]], dtype=object).to_numpy()

    whole = _nightly(pids)
    for block in (1, 3, 4, 11, 50):
        asked.clear()
        got = contexts_in_blocks(affinities, len(pids), GENRES, artwork_context_names(GENRES), block)
        np.testing.assert_array_equal(got, whole)
        assert asked == [(lo, min(lo + block, len(pids))) for lo in range(0, len(pids), block)]
    assert contexts_in_blocks(affinities, 0, GENRES, artwork_context_names(GENRES), 3).shape == (0, 3)
