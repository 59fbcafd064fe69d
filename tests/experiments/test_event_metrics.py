"""Per-profile metrics from the event log: windows, pre-period covariates, cells, cumulative."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest

from experiments.allocation import assign_cell
from experiments.event_metrics import DEFAULT_METRICS, analyze_events, cumulative_lift, metrics_from_events
from experiments.report import analyze
from experiments.units import ExperimentDataError
from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA
from pathways.config import ExperimentConfig
from tests.experiments import sim

T0 = sim.T0
H = timedelta(hours=1)
CONFIG = ExperimentConfig()


def _profiles(created: dict[int, object]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"profile_id": p, "account_id": 1, "is_kids": False, "region": "US", "max_maturity_level": 3,
          "devices": ["tv"], "created_at": c} for p, c in created.items()],
        schema=PROFILE_SCHEMA,
    )


def _events(rows: list[tuple[str, object, int, float | None]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"event_id": f"e{i}", "event_type": k, "ts": ts, "profile_id": p, "title_id": 1, "fraction_watched": f}
         for i, (k, ts, p, f) in enumerate(rows)],
        schema=EVENT_SCHEMA,
    )


END = T0 + 48 * H
PRE = T0 - 24 * H
PROFILES = _profiles({1: PRE - H, 2: PRE - H, 3: PRE - H, 6: END + H})
EVENTS = _events(
    [
        ("impression", T0, 1, None),  # at start: in
        ("play", T0 + H, 1, 0.5),
        ("complete", T0 + 2 * H, 1, 1.0),
        ("play", T0 + 3 * H, 1, None),  # no fraction: counts as a play, adds 0 watched
        ("pause", T0 + 3 * H, 1, 0.7),  # not a play: no watched fraction
        ("impression", END, 1, None),  # at end: out
        ("impression", T0 - timedelta(seconds=1), 2, None),  # pre-period
        ("play", T0 - 12 * H, 2, 0.25),  # pre-period
        ("play", PRE - H, 2, 0.9),  # before the pre-period: out
        ("play", T0 + H, 99, 1.0),  # unknown profile: ignored
        ("play", T0 + H, 6, 1.0),  # profile created after the end: not a unit
    ]
)


def test_counts_per_profile_in_each_window():
    df = metrics_from_events(EVENTS, PROFILES, CONFIG, T0, END, PRE).set_index("profile_id")
    assert list(df.index) == [1, 2, 3]
    cols = ["plays", "watch_fraction", "completes", "impressions"]
    assert df.loc[1, cols].tolist() == [2, 0.5, 1, 1]
    assert df.loc[2, cols].tolist() == [0, 0.0, 0, 0]
    assert df.loc[3, cols].tolist() == [0, 0.0, 0, 0]
    assert df.loc[2, ["pre_" + c for c in cols]].tolist() == [1, 0.25, 0, 1]
    assert df.loc[1, ["pre_" + c for c in cols]].tolist() == [0, 0.0, 0, 0]
    assert df["cell"].tolist() == [assign_cell(p, CONFIG) for p in (1, 2, 3)]


def test_without_pre_start_there_are_no_covariates_and_iso_strings_work():
    df = metrics_from_events(EVENTS, PROFILES, CONFIG, "2026-10-01T00:00:00Z", "2026-10-03")
    assert not [c for c in df.columns if c.startswith("pre_")]
    assert df.set_index("profile_id").loc[1, "plays"] == 2


@pytest.mark.parametrize(
    ("start", "end", "pre", "message"),
    [
        (END, T0, None, r"start .* must be before end"),
        (T0, T0, None, r"start .* must be before end"),
        (T0, END, T0, r"pre_start .* must be before start"),
        ("yesterday", END, None, r"start: not an ISO 8601 time: 'yesterday'"),
        (T0, END, "2026-13-01", r"pre_start: not an ISO 8601 time"),
    ],
)
def test_bad_windows(start, end, pre, message):
    with pytest.raises(ValueError, match=message):
        metrics_from_events(EVENTS, PROFILES, CONFIG, start, end, pre)


def test_missing_event_or_profile_columns():
    with pytest.raises(ExperimentDataError, match=r"events lack column\(s\) \['fraction_watched'\]"):
        metrics_from_events(EVENTS.drop_columns(["fraction_watched"]), PROFILES, CONFIG, T0, END)
    with pytest.raises(ExperimentDataError, match="profiles lack column 'profile_id'"):
        metrics_from_events(EVENTS, PROFILES.drop_columns(["profile_id"]), CONFIG, T0, END)
    with pytest.raises(ExperimentDataError, match="event table is empty"):
        analyze_events(EVENTS.slice(0, 0), PROFILES, CONFIG)


@pytest.fixture(scope="module")
def world():
    return sim.world(50, n_profiles=300, days=3, pre_days=2, config=CONFIG,
                     play_rate={"control": 0.2, "challenger": 0.3})


def test_cumulative_last_day_equals_the_full_window_analysis(world):
    events, profiles = world
    end = T0 + timedelta(days=3)
    cum = cumulative_lift(events, profiles, CONFIG, DEFAULT_METRICS, T0, end, PRE - 24 * H)
    assert sorted(set(cum["day"])) == [1, 2, 3]
    assert len(cum) == 3 * len(DEFAULT_METRICS)
    frame = metrics_from_events(events, profiles, CONFIG, T0, end, PRE - 24 * H)
    full = analyze(frame, DEFAULT_METRICS, CONFIG, {"plays": "pre_plays"})
    last = cum[(cum["day"] == 3) & (cum["metric"] == "plays")].iloc[0]
    assert last["diff"] == pytest.approx(full.results[0].diff)
    assert (last["rel_lo"], last["rel_hi"]) == pytest.approx(full.results[0].rel_ci)
    plays = cum[cum["metric"] == "plays"].sort_values("day")
    widths = (plays["diff_hi"] - plays["diff_lo"]).to_numpy()
    assert pd.Series(plays["through"]).is_monotonic_increasing and widths[0] < widths[-1]  # counts grow


def test_analyze_events_finds_the_planted_effect(world):
    events, profiles = world
    report = analyze_events(events, profiles, CONFIG, T0, T0 + timedelta(days=3), PRE - 24 * H, daily=False)
    by_metric = {r.metric: r for r in report.results}
    ppi = by_metric["plays_per_impression"]
    assert ppi.rel_ci[0] <= 0.5 <= ppi.rel_ci[1] and ppi.significant  # true 0.3 / 0.2 - 1
    assert by_metric["plays"].covariate == "pre_plays" and by_metric["plays"].variance_reduction > 0
    assert not report.srm.flagged and report.cumulative is None
    assert sum(report.cells.values()) == 300
