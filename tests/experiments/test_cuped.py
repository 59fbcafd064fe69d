"""CUPED: variance falls by about rho^2, theta is the regression slope, intervals narrow."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.cuped import cuped
from experiments.lift import lift
from tests.experiments import sim


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_variance_reduction_is_about_rho_squared(rho):
    df = sim.units(np.random.default_rng(30), 10_000, 10_000, rho=rho)
    res = cuped(df, "y", "pre_y")
    assert res.variance_reduction == pytest.approx(rho**2, abs=0.02)
    assert res.correlation == pytest.approx(rho, abs=0.02)
    assert res.theta == pytest.approx(rho, abs=0.03)  # cov(y, pre_y) / var(pre_y) = 2 rho 2 / 4
    assert res.adjusted.mean() == pytest.approx(df["y"].mean())  # centred covariate: mean kept
    assert np.var(res.adjusted, ddof=1) == pytest.approx((1 - res.variance_reduction) * np.var(df["y"], ddof=1))


def test_cuped_lift_is_narrower_by_sqrt_one_minus_rho_squared():
    rho = 0.8
    df = sim.units(np.random.default_rng(31), 4_000, 1_000, mean_control=5.0, mean_treatment=5.2, rho=rho)
    plain, adjusted = lift(df, "y"), lift(df, "y", covariate="pre_y")
    ratio = (adjusted.diff_ci[1] - adjusted.diff_ci[0]) / (plain.diff_ci[1] - plain.diff_ci[0])
    assert ratio == pytest.approx(np.sqrt(1 - rho**2), abs=0.04)
    assert adjusted.covariate == "pre_y" and adjusted.variance_reduction == pytest.approx(rho**2, abs=0.03)
    assert adjusted.diff_ci[0] <= 0.2 <= adjusted.diff_ci[1]


def test_theta_is_estimated_on_both_cells_pooled():
    df = sim.units(np.random.default_rng(32), 300, 200, rho=0.5)
    res = lift(df, "y", covariate="pre_y")
    expected = np.cov(df["y"], df["pre_y"])[0, 1] / np.var(df["pre_y"], ddof=1)
    assert res.theta == pytest.approx(expected)


def test_a_constant_covariate_leaves_the_metric_unchanged():
    df = sim.units(np.random.default_rng(33), 50, 50).assign(pre_y=3.0)
    res = cuped(df, "y", "pre_y")
    assert res.theta == 0.0 and res.variance_reduction == pytest.approx(0.0)
    np.testing.assert_allclose(res.adjusted, df["y"])
    assert lift(df, "y", covariate="pre_y").diff_ci == pytest.approx(lift(df, "y").diff_ci)
