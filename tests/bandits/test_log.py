"""BanditLog: a table of bad inputs with their exact errors, the Parquet round trip, event extraction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from bandits.log import BanditLog
from features.schema import EVENT_SCHEMA
from tests.bandits.conftest import tiny_log

BAD_INPUTS = [
    ("context", np.zeros(4, dtype=np.float32), "context: expected a 2-d array (n, S), got shape (4,)"),
    ("context", np.full((4, 2), np.nan, dtype=np.float32), "context: must be finite"),
    ("arm", np.array([0, 1, 2]), "arm: expected shape (4,) to match context, got (3,)"),
    ("arm", np.array([0, 1, 3, 0]), "arm: must be in [0, n_arms)"),
    ("arm", np.array([0, -1, 2, 0]), "arm: must be in [0, n_arms)"),
    ("n_arms", np.array([3, 3, 0, 3]), "n_arms: must be >= 1"),
    ("propensity", np.array([0.3, 0.0, 0.3, 0.3]), "propensity: must be in (0, 1]"),
    ("propensity", np.array([0.3, 1.2, 0.3, 0.3]), "propensity: must be in (0, 1]"),
    ("propensity", np.array([0.3, np.nan, 0.3, 0.3]), "propensity: must be in (0, 1]"),
    ("position", np.array([0, -2, 1, 1]), "position: must be >= 0"),
    ("reward", np.array([0, np.inf, 0, 0]), "reward: must be finite"),
    ("title_id", np.array(["a", "b", "c", "d"]), "title_id: expected numbers, got dtype <U1"),
    ("policy_version", np.array(["v1"]), "policy_version: expected shape (4,) to match context, got (1,)"),
    ("context_names", ("genre:A",), "context_names: 1 names for 2 context columns"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_INPUTS, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_INPUTS)])
def test_bad_inputs_raise_the_exact_error(field, value, message):
    kwargs = tiny_log()
    kwargs[field] = value
    with pytest.raises(ValueError) as err:
        BanditLog(**kwargs)
    assert str(err.value) == message


def test_valid_log_coerces_dtypes():
    log = BanditLog(**tiny_log())
    assert log.arm.dtype == np.int32 and log.propensity.dtype == np.float64 and log.context.dtype == np.float32
    assert len(log) == 4


def test_parquet_round_trip(uniform_log, tmp_path):
    back = BanditLog.read_parquet(uniform_log.write_parquet(tmp_path / "log.parquet"))
    assert back.context_names == uniform_log.context_names
    for field in ("context", "profile_id", "title_id", "arm", "n_arms", "propensity", "position", "policy_version", "reward"):
        np.testing.assert_array_equal(getattr(back, field), getattr(uniform_log, field))


def test_from_table_names_missing_columns():
    table = BanditLog(**tiny_log()).to_table().drop_columns(["propensity"])
    with pytest.raises(ValueError, match=r"missing columns \['propensity'\]"):
        BanditLog.from_table(table)


def _event(i, kind, profile, title, session, minutes, **extra):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return {"event_id": f"e{i}", "event_type": kind, "ts": t0 + timedelta(minutes=minutes), "profile_id": profile,
            "title_id": title, "session_id": session, **extra}


def test_from_events_joins_clicks_and_plays_to_impressions():
    imp = dict(artwork_id=2, propensity=0.25, policy_version="lin-1", row_index=3, position=5)
    events = pa.Table.from_pylist(
        [
            _event(0, "artwork_impression", 1, 10, "s1", 0, **imp),  # clicked later: reward 1
            _event(1, "artwork_click", 1, 10, "s1", 1),
            _event(2, "artwork_impression", 1, 11, "s1", 0, **imp),  # played in another session: 0
            _event(3, "play", 1, 11, "s2", 2),
            _event(4, "artwork_impression", 2, 10, "s3", 5, **imp),  # play came before: 0
            _event(5, "play", 2, 10, "s3", 1),
            _event(6, "artwork_impression", 2, 12, "s3", 5, **imp),  # played after: 1
            _event(7, "play", 2, 12, "s3", 9),
            _event(8, "impression", 2, 12, "s3", 5),  # not an artwork round
        ],
        schema=EVENT_SCHEMA,
    )
    log = BanditLog.from_events(events, context_fn=lambda p: np.c_[p, p * 2.0], n_arms_fn=lambda t: np.full(len(t), 4))
    np.testing.assert_array_equal(log.reward, [1, 0, 0, 1])
    np.testing.assert_array_equal(log.arm, [2, 2, 2, 2])
    np.testing.assert_array_equal(log.position, [5, 5, 5, 5])
    np.testing.assert_allclose(log.propensity, 0.25)
    np.testing.assert_array_equal(log.context[:, 1], [2, 2, 4, 4])
    assert set(log.policy_version) == {"lin-1"}


def test_from_events_rejects_impressions_without_propensity():
    events = pa.Table.from_pylist([_event(0, "artwork_impression", 1, 10, "s", 0, artwork_id=1)], schema=EVENT_SCHEMA)
    with pytest.raises(ValueError, match="1 artwork_impression events lack propensity"):
        BanditLog.from_events(events, context_fn=lambda p: np.zeros((len(p), 1)), n_arms_fn=lambda t: np.full(len(t), 3))
