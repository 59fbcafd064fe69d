"""Lift estimators: parity with scipy, interval coverage on data with a known effect, A/A."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.lift import lift
from experiments.units import RatioMetric
from tests.experiments import sim

PPI = RatioMetric("plays_per_impression", "plays", "impressions")


def test_welch_matches_scipy_ttest():
    df = sim.units(np.random.default_rng(1), 300, 120, mean_control=5.0, mean_treatment=5.6)
    res = lift(df, "y", alpha=0.1)
    y = df["y"].to_numpy()
    treat, ctrl = y[df["cell"] == "challenger"], y[df["cell"] == "control"]
    ref = stats.ttest_ind(treat, ctrl, equal_var=False)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.diff_ci == pytest.approx(tuple(ref.confidence_interval(0.9)), rel=1e-9)
    assert res.diff == pytest.approx(treat.mean() - ctrl.mean())
    assert res.rel_lift == pytest.approx(treat.mean() / ctrl.mean() - 1)
    assert (res.n_control, res.n_treatment, res.method) == (300, 120, "welch+delta")


def _coverage(results, true_diff: float, true_rel: float) -> tuple[float, float]:
    diff = np.mean([r.diff_ci[0] <= true_diff <= r.diff_ci[1] for r in results])
    rel = np.mean([r.rel_ci[0] <= true_rel <= r.rel_ci[1] for r in results])
    return float(diff), float(rel)


@pytest.mark.parametrize(
    ("kwargs", "n_per_cell"),
    [
        ({}, 150),
        ({"covariate": "pre_y"}, 150),
        ({"method": "bootstrap", "n_boot": 400}, 200),
    ],
    ids=["welch-delta", "cuped", "bootstrap"],
)
def test_intervals_cover_the_true_lift_at_the_nominal_rate(kwargs, n_per_cell):
    rng = np.random.default_rng(20)
    results = []
    for i in range(200):
        df = sim.units(rng, n_per_cell, n_per_cell, mean_control=5.0, mean_treatment=5.5, rho=0.7)
        results.append(lift(df, "y", seed=i, **kwargs))
    diff_cov, rel_cov = _coverage(results, true_diff=0.5, true_rel=0.1)
    assert 0.91 <= diff_cov <= 0.99, diff_cov
    assert 0.91 <= rel_cov <= 0.99, rel_cov


@pytest.mark.parametrize("method", ["analytic", "bootstrap"])
def test_ratio_metric_intervals_cover_the_true_lift(method):
    rng = np.random.default_rng(21)
    results = [
        lift(sim.ratio_units(rng, 200, 200, 0.10, 0.12), PPI, method=method, n_boot=400, seed=i)
        for i in range(200)
    ]
    diff_cov, rel_cov = _coverage(results, true_diff=0.02, true_rel=0.2)
    assert 0.91 <= diff_cov <= 0.99, diff_cov
    assert 0.91 <= rel_cov <= 0.99, rel_cov
    assert results[0].method == ("delta-ratio" if method == "analytic" else "bootstrap")


def test_ratio_metric_is_the_ratio_of_sums():
    df = sim.ratio_units(np.random.default_rng(3), 50, 40, 0.1, 0.2)
    res = lift(df, PPI)
    ctrl, treat = df[df["cell"] == "control"], df[df["cell"] == "challenger"]
    assert res.mean_control == pytest.approx(ctrl["plays"].sum() / ctrl["impressions"].sum())
    assert res.mean_treatment == pytest.approx(treat["plays"].sum() / treat["impressions"].sum())


@pytest.mark.parametrize("kwargs", [{}, {"covariate": "pre_y"}, {"alpha": 0.1}], ids=["welch", "cuped", "alpha0.1"])
def test_a_a_test_rejects_at_about_alpha(kwargs):
    rng = np.random.default_rng(22)
    rejections = [lift(sim.units(rng, 120, 80, rho=0.5), "y", **kwargs).significant for _ in range(500)]
    alpha = kwargs.get("alpha", 0.05)
    assert alpha - 0.025 <= np.mean(rejections) <= alpha + 0.025, np.mean(rejections)


def test_bootstrap_is_reproducible_from_its_seed_and_agrees_with_welch():
    df = sim.units(np.random.default_rng(4), 400, 400, mean_control=5.0, mean_treatment=5.5)
    a, b = (lift(df, "y", method="bootstrap", seed=7) for _ in range(2))
    c = lift(df, "y", method="bootstrap", seed=8)
    assert a == b and a.diff_ci != c.diff_ci
    welch = lift(df, "y")
    width = welch.diff_ci[1] - welch.diff_ci[0]
    assert a.diff == pytest.approx(welch.diff)
    assert np.allclose(a.diff_ci, welch.diff_ci, atol=0.1 * width)


def test_zero_control_mean_gives_an_undefined_relative_lift():
    df = sim.units(np.random.default_rng(5), 20, 20)
    df["y"] = np.where(df["cell"] == "control", 0.0, df["y"])
    res = lift(df, "y")
    assert np.isnan(res.rel_lift) and all(np.isnan(res.rel_ci))
    assert np.isfinite(res.diff) and res.diff_ci[0] < res.diff < res.diff_ci[1]
