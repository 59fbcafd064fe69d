"""Lift of one metric, treatment vs control: the estimate, its intervals and p-value (``lift``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import pyarrow as pa

from experiments.cuped import cuped_arrays
from experiments.intervals import analytic_interval, bootstrap_interval, mean_and_var
from experiments.units import (
    CELL,
    ExperimentDataError,
    Metric,
    RatioMetric,
    check_alpha,
    metric_columns,
    metric_name,
    validate_units,
)


@dataclass(frozen=True)
class LiftResult:
    """Treatment vs control on one metric. ``rel_*`` are fractions (0.05 = +5%)."""

    metric: str
    control: str
    treatment: str
    n_control: int
    n_treatment: int
    mean_control: float  # per-unit mean (CUPED-adjusted if covariate) or ratio of sums
    mean_treatment: float
    diff: float  # mean_treatment - mean_control
    diff_ci: tuple[float, float]
    rel_lift: float  # mean_treatment / mean_control - 1 (NaN when mean_control == 0)
    rel_ci: tuple[float, float]
    p_value: float
    alpha: float
    method: str  # "welch+delta", "delta-ratio" or "bootstrap"
    covariate: str | None = None
    theta: float | None = None
    variance_reduction: float | None = None

    @property
    def significant(self) -> bool:
        """True when p < alpha."""
        return self.p_value < self.alpha


def lift(
    df: pd.DataFrame | pa.Table,
    metric: Metric,
    control: str = "control",
    treatment: str = "challenger",
    alpha: float = 0.05,
    *,
    covariate: str | None = None,
    method: Literal["analytic", "bootstrap"] = "analytic",
    n_boot: int = 2000,
    seed: int = 0,
) -> LiftResult:
    """Compare ``treatment`` to ``control`` on ``metric`` (a column name or a ``RatioMetric``).

    analytic: Welch t interval for the difference of means (normal, delta method, for a ratio
    metric) and a delta-method interval for the relative lift. bootstrap: percentile intervals
    from ``n_boot`` resamples of units within each cell, drawn from ``default_rng(seed)``.
    ``covariate``: CUPED-adjust the (non-ratio) metric first, theta from both cells pooled.
    """
    check_alpha(alpha)
    if control == treatment:
        raise ValueError(f"control and treatment must differ, both are '{control}'")
    if method not in ("analytic", "bootstrap"):
        raise ValueError(f"method must be 'analytic' or 'bootstrap', got {method!r}")
    if method == "bootstrap" and n_boot < 100:
        raise ValueError(f"n_boot must be >= 100, got {n_boot}")
    ratio = isinstance(metric, RatioMetric)
    if ratio and covariate is not None:
        raise ValueError(f"covariate adjustment is not supported for ratio metric '{metric_name(metric)}'")
    columns = [*metric_columns(metric), *([covariate] if covariate else [])]
    frame = validate_units(df, columns, required=(control, treatment))
    cell = frame[CELL].to_numpy()
    keep = (cell == control) | (cell == treatment)
    cell = cell[keep]
    values = frame[list(metric_columns(metric))].to_numpy(dtype=float)[keep].T  # (1 or 2, n)
    theta = reduction = None
    if covariate is not None:
        adjusted, theta, reduction, _ = cuped_arrays(values[0], frame[covariate].to_numpy(dtype=float)[keep])
        values = adjusted[None, :]
    cell_cols = {c: values[:, cell == c] for c in (control, treatment)}
    if isinstance(metric, RatioMetric):
        for c, cols in cell_cols.items():
            if cols[1].sum() <= 0:
                raise ExperimentDataError(
                    f"ratio '{metric.name}': denominator '{metric.denominator}' sums to 0 in cell '{c}'"
                )
    c0, c1 = cell_cols[control], cell_cols[treatment]
    if method == "bootstrap":
        m0, m1 = (mean_and_var(c, ratio)[0] for c in (c0, c1))
        diff_ci, rel_ci, p, label = bootstrap_interval(c0, c1, ratio, alpha, n_boot, seed)
    else:
        (m0, m1), diff_ci, rel_ci, p, label = analytic_interval(c0, c1, ratio, alpha)
    rel = m1 / m0 - 1.0 if m0 != 0 else math.nan
    return LiftResult(
        metric=metric_name(metric),
        control=control,
        treatment=treatment,
        n_control=int(c0.shape[1]),
        n_treatment=int(c1.shape[1]),
        mean_control=m0,
        mean_treatment=m1,
        diff=m1 - m0,
        diff_ci=diff_ci,
        rel_lift=rel,
        rel_ci=rel_ci,
        p_value=p,
        alpha=alpha,
        method=label,
        covariate=covariate,
        theta=theta,
        variance_reduction=reduction,
    )
