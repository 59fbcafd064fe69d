"""Reports (text table, JSON) and their PNG figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.event_metrics import analyze_events
from experiments.plots import plot_cumulative_lift, plot_lift, save_report_plots
from experiments.report import analyze
from experiments.units import RatioMetric
from pathways.config import ExperimentConfig
from tests.experiments import sim

CONFIG = ExperimentConfig()
PNG = b"\x89PNG\r\n\x1a\n"


def _frame(n_control: int = 800, n_treatment: int = 200):
    rng = np.random.default_rng(60)
    df = sim.units(rng, n_control, n_treatment, mean_control=5.0, mean_treatment=5.5, rho=0.6)
    ratio = sim.ratio_units(rng, n_control, n_treatment, 0.1, 0.1)
    return df.assign(plays=ratio["plays"], impressions=ratio["impressions"], zero=0.0)


def test_table_and_json_carry_every_result():
    report = analyze(_frame(), ["y", RatioMetric("ppi", "plays", "impressions"), "zero"], CONFIG, {"y": "pre_y"})
    table = report.table()
    for needle in ("ranker_v1", "sample ratio", "ppi", "CUPED(pre_y", "welch+delta*", "delta-ratio", "95% CI"):
        assert needle in table, needle
    data = json.loads(report.to_json())
    assert data["srm"]["flagged"] is False and data["cells"] == {"challenger": 200, "control": 800}
    assert [r["metric"] for r in data["results"]] == ["y", "ppi", "zero"]
    y = data["results"][0]
    assert y["significant"] is True and y["diff_ci"] == list(report.results[0].diff_ci)
    assert data["results"][2]["rel_lift"] is None  # 0/0: undefined, written as null


def test_a_mismatched_split_is_called_out_in_the_table():
    report = analyze(_frame(500, 500), ["y"], CONFIG)
    assert report.srm.flagged and "MISMATCH" in report.table()
    assert json.loads(report.to_json())["srm"]["flagged"] is True


@pytest.fixture(scope="module")
def daily_report():
    events, profiles = sim.world(61, n_profiles=120, days=3, pre_days=0, config=CONFIG,
                                 play_rate={"control": 0.2, "challenger": 0.25})
    return analyze_events(events, profiles, CONFIG)


def test_save_report_plots_writes_non_empty_pngs(daily_report, tmp_path):
    paths = save_report_plots(daily_report, tmp_path / "plots")
    names = [p.name for p in paths]
    assert names[0] == "lift.png" and "cumulative_plays_per_impression.png" in names
    assert len(paths) == 1 + len(daily_report.results)
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 5_000, p
    json.loads(daily_report.to_json())  # the cumulative frame serializes too


def test_plot_functions_return_figures_and_reject_empty_input(daily_report):
    fig = plot_lift(daily_report.results, relative=False)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_yticks()) == len(daily_report.results)
    cum = plot_cumulative_lift(daily_report.cumulative, "plays")
    assert cum.axes[0].get_title() == "cumulative lift: plays"
    with pytest.raises(ValueError, match="at least one result"):
        plot_lift([])
    with pytest.raises(ValueError, match="no cumulative rows for metric 'nope'"):
        plot_cumulative_lift(daily_report.cumulative, "nope")


def test_plot_folder_that_is_a_file_is_rejected(daily_report, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        save_report_plots(daily_report, tmp_path / "f")
