"""Invariants of the lift estimators (Hypothesis) and experiments with more than two cells."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.lift import lift
from experiments.report import analyze
from experiments.units import RatioMetric
from pathways.config import ExperimentConfig
from tests.experiments import sim

PPI = RatioMetric("ppi", "plays", "impressions")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0), shift=st.floats(-50.0, 50.0))
def test_order_scale_and_swap_invariants(seed, scale, shift):
    rng = np.random.default_rng(seed)
    df = sim.units(rng, 30, 20, mean_control=5.0, mean_treatment=6.0, rho=0.5)
    base = lift(df, "y", covariate="pre_y")
    shuffled = lift(df.sample(frac=1.0, random_state=seed), "y", covariate="pre_y")
    assert shuffled.diff == pytest.approx(base.diff) and shuffled.p_value == pytest.approx(base.p_value)
    scaled = lift(df.assign(y=df["y"] * scale), "y", covariate="pre_y")
    assert scaled.diff == pytest.approx(base.diff * scale)
    assert scaled.rel_lift == pytest.approx(base.rel_lift) and scaled.p_value == pytest.approx(base.p_value)
    moved = lift(df.assign(pre_y=df["pre_y"] + shift), "y", covariate="pre_y")  # theta ignores offsets
    assert moved.diff == pytest.approx(base.diff) and moved.theta == pytest.approx(base.theta)
    swapped = lift(df, "y", control="challenger", treatment="control", covariate="pre_y")
    assert swapped.diff == pytest.approx(-base.diff) and swapped.p_value == pytest.approx(base.p_value)
    assert swapped.diff_ci == pytest.approx((-base.diff_ci[1], -base.diff_ci[0]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5))
def test_ratio_of_sums_ignores_how_units_are_scaled_together(seed, k):
    df = sim.ratio_units(np.random.default_rng(seed), 40, 30, 0.1, 0.15)
    base = lift(df, PPI)
    doubled = lift(df.assign(plays=df["plays"] * k, impressions=df["impressions"] * k), PPI)
    assert doubled.mean_control == pytest.approx(base.mean_control)
    assert doubled.diff_ci == pytest.approx(base.diff_ci) and doubled.rel_ci == pytest.approx(base.rel_ci)


def test_every_treatment_cell_is_compared_to_control():
    config = ExperimentConfig(cells={"control": 0.5, "a": 0.25, "b": 0.25, "off": 0.0})
    rng = np.random.default_rng(80)
    df = sim.units(rng, 400, 400, mean_control=5.0, mean_treatment=6.0)
    df["cell"] = np.where(df["cell"] == "control", "control", np.where(df.index % 2 == 0, "a", "b"))
    report = analyze(df, ["y"], config)
    assert [(r.metric, r.treatment) for r in report.results] == [("y", "a"), ("y", "b")]
    assert report.cells == {"a": 200, "b": 200, "control": 400, "off": 0} and not report.srm.flagged
    assert all(r.significant and r.diff == pytest.approx(1.0, abs=0.4) for r in report.results)
