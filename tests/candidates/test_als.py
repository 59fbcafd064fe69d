"""ALS training and retrieval: block structure recovered, the source equals brute force with the rules."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest

from candidates.als import AlsSource
from pathways.types import ProfileContext
from ranking.rules import allowed_mask
from tests.candidates import world
from training.als import fit_als, interaction_matrix, nightly_als
from training.models.als import confidence_matrix
from training.recommender import Interactions, recommend


def _played(profile_id: int) -> set[int]:
    ev = world.events().to_pylist()
    return {e["title_id"] for e in ev if e["profile_id"] == profile_id and e["ts"] <= world.AS_OF}


def test_two_blocks_recommend_same_block_titles() -> None:
    als = world.als()
    scores = als.user_factors @ als.item_factors.T
    for pid in range(1, 17):
        block = set(world.BLOCK_A if pid <= 8 else world.BLOCK_B)
        unseen = block - _played(pid)
        ranked = [int(als.title_ids[j]) for j in np.argsort(-scores[als.profile_row[pid]])
                  if int(als.title_ids[j]) not in _played(pid)]
        assert set(ranked[: len(unseen)]) == unseen, f"profile {pid}: {ranked[: len(unseen)]} vs {unseen}"


def test_source_returns_same_block_titles() -> None:
    source = AlsSource(world.als(), world.catalog(), world.CONFIG)
    for pid, block in ((2, world.BLOCK_A), (12, world.BLOCK_B)):
        profile = ProfileContext(pid, "BR", 4, history=tuple(sorted(_played(pid))))
        (row,) = source.generate(profile)
        assert row.evidence == "Top picks for you"
        head = row.title_ids[: min(3, len(row))]
        assert set(head.tolist()) <= set(block)
        assert not set(row.title_ids.tolist()) & _played(pid)


def test_source_equals_brute_force_with_rules_for_a_kids_profile() -> None:
    """Over-fetching must find the true top allowed unseen titles even when the rules block most."""
    als, cat = world.als(), world.catalog()
    profile = ProfileContext(12, "GB", 1, is_kids=True, history=(113, 101), finished=frozenset({113}))
    (row,) = AlsSource(als, cat, world.CONFIG).generate(profile)
    scores = als.user_factors[als.profile_row[12]] @ als.item_factors.T
    ok = allowed_mask(cat, als.title_ids, "GB", 1, profile.finished) & ~np.isin(als.title_ids, [113, 101])
    order = [j for j in np.argsort(-scores, kind="stable") if ok[j]][: world.CONFIG.per_source]
    np.testing.assert_array_equal(row.title_ids, als.title_ids[order])
    np.testing.assert_allclose(row.scores, scores[order], rtol=1e-5)


def test_profile_without_factors_gets_no_rows() -> None:
    source = AlsSource(world.als(), world.catalog(), world.CONFIG)
    assert source.generate(ProfileContext(12345, "US", 4)) == []


def test_a_profile_with_all_zero_factors_gets_no_rows_on_either_path() -> None:
    """All its scores tie at 0: faiss's pick among ties depends on how many results are asked for,
    so it would get an arbitrary "Top picks" row, and a different one per path."""
    from candidates.block import ProfileBlock

    als = world.als()
    factors = als.user_factors.copy()
    factors[als.profile_row[12]] = 0.0
    source = AlsSource(dataclasses.replace(als, user_factors=factors), world.catalog(), world.CONFIG)
    zero, other = ProfileContext(12, "BR", 4), ProfileContext(2, "BR", 4)
    assert source.generate(zero) == [] and len(source.generate(other)) == 1
    block = source.generate_block(ProfileBlock([zero, other], world.catalog(), source.rules))
    assert set(block.profile.tolist()) == {1}  # rows of the second profile only


def test_interaction_matrix_sums_fractions_and_keeps_zero_plays() -> None:
    t = world.T0
    ev = world.events_table([
        world.event(0, 1, 101, t, 0.5),
        world.event(1, 1, 101, t + timedelta(hours=1), 0.25),
        world.event(2, 1, 102, t, None),  # a play with no fraction still counts as played
        world.event(3, 2, 102, t, 1.0, kind="impression"),  # not a play
        world.event(4, 2, 103, t, 0.9),
    ])
    summed, pids, tids = interaction_matrix(ev)
    np.testing.assert_array_equal(pids, [1, 2])
    np.testing.assert_array_equal(tids, [101, 102, 103])
    np.testing.assert_allclose(summed.toarray(), [[0.75, 0.0, 0.0], [0.0, 0.0, 0.9]])
    assert summed.nnz == 3
    conf = confidence_matrix(summed, alpha=20.0)
    np.testing.assert_allclose(conf.toarray(), [[16.0, 1.0, 0.0], [0.0, 0.0, 19.0]])


def test_fit_is_seeded_and_recommender_matches() -> None:
    a, b = fit_als(world.events(), world.TRAIN, num_threads=1), world.als()
    np.testing.assert_allclose(a.item_factors, b.item_factors, rtol=1e-5, atol=1e-6)
    summed, pids, tids = interaction_matrix(world.events())
    coo = summed.tocoo()
    data = Interactions(coo.row.astype(np.int64), coo.col.astype(np.int64), np.zeros(coo.nnz, np.int64),
                        len(pids), len(tids), weights=coo.data)
    rec = nightly_als(world.TRAIN, num_threads=1).fit(data)
    np.testing.assert_allclose(rec.user_factors_, b.user_factors, rtol=1e-4, atol=1e-5)
    top = recommend(rec, np.arange(len(pids)), 3, exclude=summed)
    assert top.shape == (len(pids), 3)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (world.events_table([world.event(0, 1, 101, world.T0, 1.5)]), "fraction_watched must lie in"),
        (world.events_table([world.event(0, 1, 101, world.T0, 1.0, kind="impression")]), "no play events"),
        (world.events_table([]).drop_columns(["fraction_watched"]), "fraction_watched"),
    ],
)
def test_bad_training_events_are_rejected(events, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_als(events, world.TRAIN)
