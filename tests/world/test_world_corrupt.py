"""corrupt_events: the bad rows it mixes in are exactly what the ingest validator rejects."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from features.ingest import ingest
from features.schema import EVENT_SCHEMA
from tests.world.world_cases import tiny
from world.corrupt import KINDS, corrupt_events


def test_counts_match_the_validator_reason_for_reason(tmp_path):
    w = tiny()
    mixed, counts = corrupt_events(w.events, 0.05, seed=1, profiles=w.profiles, titles=w.titles)
    assert mixed.schema.equals(EVENT_SCHEMA)
    assert set(counts) == set(KINDS) and all(n > 0 for n in counts.values())
    assert mixed.num_rows == w.events.num_rows + sum(counts.values())
    report = ingest(mixed, w.titles, w.profiles, tmp_path, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert report.by_reason == counts
    assert report.accepted == w.events.num_rows


def test_clean_rows_keep_their_order_and_bad_rows_are_spread():
    w = tiny()
    mixed, counts = corrupt_events(w.events, 0.1, seed=2, profiles=w.profiles, titles=w.titles)
    ids = mixed.column("event_id").to_pylist()
    kept = iter(i for i in ids if not i.startswith("corrupt-"))  # clean rows and duplicates
    assert all(any(i == j for j in kept) for i in w.events.column("event_id").to_pylist())  # a subsequence
    assert counts["duplicate_event_id"] > 0
    bad_at = [k for k, i in enumerate(ids) if i.startswith("corrupt-")]
    assert bad_at[0] < len(ids) // 3 and bad_at[-1] > 2 * len(ids) // 3


def test_deterministic_and_zero_fraction_is_a_no_op():
    w = tiny()
    a = corrupt_events(w.events, 0.02, seed=5, profiles=w.profiles, titles=w.titles)
    b = corrupt_events(w.events, 0.02, seed=5, profiles=w.profiles, titles=w.titles)
    assert a.events.equals(b.events) and a.counts == b.counts
    none = corrupt_events(w.events, 0.0, seed=5, profiles=w.profiles, titles=w.titles)
    assert none.events.equals(w.events) and sum(none.counts.values()) == 0


def test_kinds_whose_event_type_is_missing_are_made_from_other_rows(tmp_path):
    w = tiny()
    plays_only = w.events.filter(pa.compute.equal(w.events["event_type"], "play"))
    mixed, counts = corrupt_events(plays_only, 0.5, seed=3, profiles=w.profiles, titles=w.titles)
    report = ingest(mixed, w.titles, w.profiles, tmp_path, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert report.by_reason == {k: n for k, n in counts.items() if n} and counts["rating_out_of_range"] > 0


@pytest.mark.parametrize(
    ("fraction", "events", "message"),
    [
        (1.5, None, "fraction must be in"),
        (-0.1, None, "fraction must be in"),
        (0.1, EVENT_SCHEMA.empty_table(), "no rows to corrupt"),
        (0.1, pa.table({"x": [1]}), "must have EVENT_SCHEMA"),
    ],
)
def test_bad_arguments(fraction, events, message):
    w = tiny()
    with pytest.raises(ValueError, match=message):
        corrupt_events(w.events if events is None else events, fraction, 0, w.profiles, w.titles)
