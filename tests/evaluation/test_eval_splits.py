"""Protocols on hand-made interactions: exact membership of train and test."""

from __future__ import annotations

import pytest

from training.evaluation.splits import LeaveLastN, Temporal, protocol_from_name

from .eval_fixtures import make_interactions


def pairs(inter) -> set[tuple[int, int]]:
    return set(zip(inter.users.tolist(), inter.items.tolist()))


def test_leave_last_n_orders_by_timestamp_then_title_id():
    # user 0: 8 items; items 7 and 3 tie at t=50 -> ordered 3 then 7; item 9 at t=10 is early.
    rows = [(0, 9, 10), (0, 1, 20), (0, 2, 30), (0, 5, 40), (0, 7, 50), (0, 3, 50), (0, 4, 60), (0, 6, 70)]
    split = LeaveLastN(3).split(make_interactions(rows, 1, 10))
    assert sorted(split.test[0].tolist()) == [4, 6, 7]  # (50,3) < (50,7) < (60,4) < (70,6): last 3
    assert pairs(split.train) == {(0, 9), (0, 1), (0, 2), (0, 5), (0, 3)}


def test_ties_at_the_boundary_break_by_title_id():
    rows = [(0, 8, 5), (0, 2, 5), (0, 5, 5), (0, 1, 5)]  # all tie: order 1, 2, 5, 8
    split = LeaveLastN(2).split(make_interactions(rows, 1, 10))
    assert sorted(split.test[0].tolist()) == [5, 8]
    assert pairs(split.train) == {(0, 1), (0, 2)}


def test_users_with_at_most_n_interactions_stay_in_train_unevaluated():
    rows = [(0, i, i) for i in range(5)] + [(1, i, i) for i in range(6)]
    split = LeaveLastN(5).split(make_interactions(rows, 2, 6))
    assert list(split.test) == [1]
    assert split.test[1].tolist() == [1, 2, 3, 4, 5]
    assert pairs(split.train) == {(0, i) for i in range(5)} | {(1, 0)}
    assert split.train.n_users == 2 and split.train.n_items == 6


def test_validation_is_carved_from_train_the_same_way():
    rows = [(0, i, 10 * i) for i in range(12)]
    protocol = LeaveLastN(5)
    split = protocol.split(make_interactions(rows, 1, 12))
    val = protocol.validation(split.train)
    assert split.test[0].tolist() == [7, 8, 9, 10, 11]
    assert val.test[0].tolist() == [2, 3, 4, 5, 6]
    assert pairs(val.train) == {(0, 0), (0, 1)}
    assert pairs(val.train) | {(0, i) for i in val.test[0]} == pairs(split.train)


def test_temporal_cut_keeps_users_active_on_both_sides():
    rows = [(0, 1, 10), (0, 2, 30), (1, 3, 40), (2, 4, 5), (2, 5, 25), (2, 6, 20)]
    split = Temporal(cut=20).split(make_interactions(rows, 3, 7))
    assert pairs(split.train) == {(0, 1), (2, 4)}  # strictly before 20
    assert {u: v.tolist() for u, v in split.test.items()} == {0: [2], 2: [5, 6]}  # user 1 has no train: dropped


def test_temporal_validation_cuts_train_at_the_same_quantile():
    rows = [(0, i, t) for i, t in enumerate(range(0, 100, 10))] + [(1, 10 + i, 5 + 10 * i) for i in range(10)]
    protocol = Temporal(quantile=0.5)
    split = protocol.split(make_interactions(rows, 2, 20))
    assert protocol.cut_time(make_interactions(rows, 2, 20)) == 50  # 20 stamps 0, 5, ..., 95
    assert split.train.timestamps.max() == 45
    assert split.test[0].tolist() == [5, 6, 7, 8, 9] and split.test[1].tolist() == [15, 16, 17, 18, 19]
    val = protocol.validation(split.train)
    assert val.train.timestamps.max() == 20  # train's 10 stamps 0..45: cut at 25
    assert val.test[0].tolist() == [3, 4] and val.test[1].tolist() == [12, 13, 14]
    assert pairs(val.train) < pairs(split.train)


@pytest.mark.parametrize(
    ("name", "message"),
    [("leave-last-0", "n must be >= 1"), ("leave-last-x", "unknown protocol"), ("random", "unknown protocol")],
)
def test_bad_protocol_names(name, message):
    with pytest.raises(ValueError, match=message):
        protocol_from_name(name)


def test_bad_temporal_quantile():
    with pytest.raises(ValueError, match="quantile must lie in"):
        Temporal(quantile=1.0)
