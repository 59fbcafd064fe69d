"""Playback state and histories: known answers, and batch == fold of apply_event."""

from __future__ import annotations

import numpy as np

from features.history import PlaybackState, apply_event, playback_states, profile_histories
from tests.conftest import make_titles
from tests.features.builders import T0, event, events_table

RUNTIME_S = 90 * 60.0  # every test title runs 90 minutes


def _rows():
    return [
        event(1, "play", 1, 100, 1, fraction_watched=0.3),
        event(2, "heartbeat", 1, 100, 2, position_s=0.5 * RUNTIME_S),  # 100 in progress at 0.5
        event(3, "play", 1, 101, 3, fraction_watched=0.5),
        event(4, "complete", 1, 101, 4),  # 101 finished
        event(5, "heartbeat", 1, 101, 5, position_s=60.0),  # a re-watch keeps it finished
        event(6, "play", 1, 102, 6, fraction_watched=0.2),
        event(7, "heartbeat", 1, 102, 7, position_s=60.0),  # back to 1/90 < min: out
        event(8, "pause", 1, 103, 8, fraction_watched=0.95),  # >= finished_fraction
        event(9, "impression", 1, 104, 9, row_index=0, position=0),  # not progress
        event(10, "play", 2, 100, 1, fraction_watched=0.6),
        event(11, "play", 1, 100, 10, fraction_watched=0.4),  # replay of 100: latest wins
        event(12, "search", 2, None, 1, query="x"),
    ]


def test_playback_states_known_answer():
    states = playback_states(events_table(_rows()), make_titles())
    p1 = states[1]
    assert p1.finished == frozenset({101, 103})
    assert set(p1.in_progress) == {100}
    frac, ts = p1.in_progress[100]
    assert np.isclose(frac, 0.4) and ts == (T0.timestamp() + 10 * 3600)
    assert states[2] == PlaybackState({100: (np.float32(0.6).item(), T0.timestamp() + 3600)}, frozenset())


def test_batch_equals_fold_of_apply_event():
    rng = np.random.default_rng(3)
    types = ["play", "pause", "complete", "heartbeat", "impression"]
    rows = []
    for n in range(300):
        etype = str(rng.choice(types, p=[0.3, 0.2, 0.05, 0.35, 0.1]))
        kw = {"fraction_watched": float(rng.uniform(0, 1))} if etype in ("play", "pause") else {}
        if etype == "heartbeat":
            kw = {"position_s": float(rng.uniform(0, RUNTIME_S))}
        rows.append(event(n, etype, int(rng.integers(1, 4)), int(rng.integers(100, 130)), float(n), **kw))
    table = events_table(rows)
    batch = playback_states(table, make_titles())

    folded: dict[int, PlaybackState] = {}
    for row in table.to_pylist():
        state = folded.get(row["profile_id"], PlaybackState())
        folded[row["profile_id"]] = apply_event(state, row, RUNTIME_S)
    folded = {p: s for p, s in folded.items() if s.in_progress or s.finished}
    assert batch.keys() == folded.keys()
    assert sum(len(s.in_progress) for s in batch.values()) > 10  # the test exercises progress
    assert sum(len(s.finished) for s in batch.values()) > 10
    for pid, state in batch.items():
        assert state.finished == folded[pid].finished
        assert list(state.in_progress) == list(folded[pid].in_progress)  # same keys, in the fold's order
        for t, (f, ts) in state.in_progress.items():
            assert np.isclose(f, folded[pid].in_progress[t][0], atol=1e-6)
            assert ts == folded[pid].in_progress[t][1]


def test_apply_event_finishes_and_removes_from_progress():
    state = PlaybackState({100: (0.5, 1.0)}, frozenset())
    hb = event(1, "heartbeat", 1, 100, 2, position_s=0.92 * RUNTIME_S)
    after = apply_event(state, hb, RUNTIME_S)
    assert after.finished == {100} and 100 not in after.in_progress
    assert state.in_progress == {100: (0.5, 1.0)}  # the input is not mutated


def test_profile_histories_oldest_first_dedup_keeps_last():
    rows = [
        event(1, "play", 1, 100, 1, fraction_watched=0.3),
        event(2, "play", 1, 101, 2, fraction_watched=0.3),
        event(3, "play", 1, 100, 3, fraction_watched=0.3),
        event(4, "impression", 1, 105, 4, row_index=0, position=1),
        event(5, "play", 2, 102, 0, fraction_watched=0.3),
    ]
    assert profile_histories(events_table(rows)) == {1: (101, 100), 2: (102,)}
    assert profile_histories(events_table([])) == {}
