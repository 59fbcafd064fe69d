"""CUPED: ``y - theta (x - mean(x))`` with ``theta = cov(y, x) / var(x)`` on the pooled units."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from experiments.units import ExperimentDataError, validate_units


@dataclass(frozen=True)
class CupedResult:
    """``adjusted = y - theta (x - mean(x))``, shape (n,), index as the input rows."""

    adjusted: pd.Series
    theta: float
    variance_reduction: float  # 1 - var(adjusted) / var(y), pooled; about corr(x, y)^2
    correlation: float


def cuped_arrays(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(adjusted y, theta, variance reduction, corr(y, x)) for y, x of shape (n,), n >= 2."""
    var_x, var_y = float(np.var(x, ddof=1)), float(np.var(y, ddof=1))
    cov = float(np.cov(y, x, ddof=1)[0, 1])
    theta = cov / var_x if var_x > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    reduction = 1.0 - float(np.var(adjusted, ddof=1)) / var_y if var_y > 0 else 0.0
    corr = cov / math.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else 0.0
    return adjusted, theta, reduction, corr


def cuped(df: pd.DataFrame | pa.Table, metric: str, covariate: str) -> CupedResult:
    """CUPED-adjust ``metric`` with the pre-period ``covariate``; theta from the pooled units.

    A constant covariate carries no information: theta = 0 (no adjustment).
    """
    frame = validate_units(df, [metric, covariate])
    if len(frame) < 2:
        raise ExperimentDataError(f"CUPED needs at least 2 units, got {len(frame)}")
    y, x = frame[metric].to_numpy(dtype=float), frame[covariate].to_numpy(dtype=float)
    adjusted, theta, reduction, corr = cuped_arrays(y, x)
    return CupedResult(pd.Series(adjusted, index=frame.index, name=metric), theta, reduction, corr)
