"""Optuna tuning sees only the validation split carved from train: test data never reach it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from training.evaluation.splits import LeaveLastN
from training.evaluation.tuning import TuningConfig, tune
from training.models import EASE
from training.registry import BuildContext, ModelSpec

from .eval_fixtures import make_interactions


def world(tail_seed: int):
    """30 users x 40 items; the first 10 interactions per user are fixed, the last 5 vary with tail_seed."""
    rng, tail = np.random.default_rng(0), np.random.default_rng(tail_seed)
    rows = []
    for u in range(30):
        head = rng.choice(20, size=10, replace=False) + (u % 2) * 5
        last = tail.choice(np.setdiff1d(np.arange(40), head), size=5, replace=False)
        rows += [(u, int(i), t) for t, i in enumerate([*head, *last])]
    return make_interactions(rows, 30, 40)


class Spy:
    """EASE that records every matrix it is fitted on."""

    seen: list[set[tuple[int, int]]] = []
    name = "spy"

    def __init__(self, l2: float = 10.0) -> None:
        self.inner = EASE(l2=l2)

    def get_params(self):
        return {"l2": self.inner.config.l2}

    def fit(self, train, *, valid=None, item_features=None):
        Spy.seen.append(set(zip(train.users.tolist(), train.items.tolist())))
        self.inner.fit(train)
        return self

    def score(self, users):
        return self.inner.score(users)


SPEC = ModelSpec("spy", lambda params, ctx: Spy(**params), lambda t: {"l2": t.suggest_float("l2", 1.0, 1000.0, log=True)})


def test_tuning_fits_only_on_validation_train_and_ignores_test():
    protocol, config = LeaveLastN(5), TuningConfig(trials=6, timeout_s=None, seed=3)
    results = []
    for tail_seed in (1, 2):  # same train part, different test part
        split = protocol.split(world(tail_seed))
        Spy.seen = []
        results.append(tune(SPEC, split.train, protocol, BuildContext(), config))
        val = protocol.validation(split.train)
        val_train = set(zip(val.train.users.tolist(), val.train.items.tolist()))
        assert len(Spy.seen) == 6 and all(s == val_train for s in Spy.seen)
        test_pairs = {(u, int(i)) for u, items in split.test.items() for i in items}
        assert not any(s & test_pairs for s in Spy.seen)
    assert results[0].params == results[1].params
    assert [h["value"] for h in results[0].history] == [h["value"] for h in results[1].history]


def test_defaults_are_the_first_trial_and_seeded_search_repeats():
    split = LeaveLastN(5).split(world(1))
    config = TuningConfig(trials=4, timeout_s=None, seed=5)
    a = tune(SPEC, split.train, LeaveLastN(5), BuildContext(), config)
    b = tune(SPEC, split.train, LeaveLastN(5), BuildContext(), config)
    assert a.history[0]["params"] == {"l2": 10.0}
    assert a.params == b.params and a.n_trials == 4
    assert a.value == max(h["value"] for h in a.history)


def test_untunable_models_are_not_tuned():
    spec = dataclasses.replace(SPEC, search_space=None)
    result = tune(spec, world(1), LeaveLastN(5), BuildContext(), TuningConfig(trials=5))
    assert (result.params, result.value, result.n_trials) == ({}, None, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"trials": -1}, "trials must be >= 0"), ({"timeout_s": 0}, "timeout_s must be > 0"), ({"metric": "auc"}, "metric must look like")],
)
def test_bad_tuning_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TuningConfig(**kwargs)
