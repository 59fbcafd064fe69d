"""Interval estimators for a lift: Welch t / delta method (analytic) and a seeded percentile bootstrap.

Columns per cell are ``cols`` of shape (1, n) for a per-unit mean, (2, n) (numerator,
denominator) for a ratio of sums. Formulas in ``docs/experiments.md``:

- absolute difference of means: Welch's t interval;
- relative lift ``mean_t / mean_c - 1``: the delta method (normal interval);
- ratio metrics (``sum(num) / sum(den)`` per cell, e.g. plays per impression): delta method;
- a seeded percentile bootstrap (resampling units within each cell) for any of the above.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

_BOOT_BLOCK = 2_000_000  # resampled values drawn at once (memory bound of the bootstrap)


def mean_and_var(cols: np.ndarray, ratio: bool) -> tuple[float, float]:
    """Cell estimate and its sampling variance. cols: shape (1, n) for a mean, (2, n) for a ratio."""
    n = cols.shape[1]
    if not ratio:
        return float(cols[0].mean()), float(cols[0].var(ddof=1)) / n
    num, den = cols
    mu_d = float(den.mean())
    r = float(num.sum() / den.sum())
    c = np.cov(num, den, ddof=1)
    var = (c[0, 0] - 2 * r * c[0, 1] + r * r * c[1, 1]) / (n * mu_d**2)
    return r, float(max(var, 0.0))


Interval = tuple[float, float]


def analytic_interval(
    c0: np.ndarray, c1: np.ndarray, ratio: bool, alpha: float
) -> tuple[tuple[float, float], Interval, Interval, float, str]:
    """((m0, m1), diff CI, relative-lift CI, p-value, label) for control/treatment columns c0, c1.

    Difference: Welch t (means) or normal (ratios, delta-method variances). Relative lift
    m1/m0 - 1: delta method, Var ~ v1/m0^2 + m1^2 v0/m0^4, normal interval (NaN if m0 == 0).
    """
    (m0, v0), (m1, v1) = mean_and_var(c0, ratio), mean_and_var(c1, ratio)
    diff, se = m1 - m0, math.sqrt(v0 + v1)
    z = float(stats.norm.ppf(1 - alpha / 2))
    if ratio:
        dist, label = stats.norm(), "delta-ratio"
    else:
        n0, n1 = c0.shape[1], c1.shape[1]
        dof = (v0 + v1) ** 2 / (v0**2 / (n0 - 1) + v1**2 / (n1 - 1)) if se > 0 else math.inf
        dist, label = stats.t(dof), "welch+delta"
    if se > 0:
        crit, p = float(dist.ppf(1 - alpha / 2)), 2 * float(dist.sf(abs(diff) / se))
    else:  # every unit identical within each cell: the difference is exact
        crit, p = 0.0, 1.0 if diff == 0 else 0.0
    diff_ci = (diff - crit * se, diff + crit * se)
    if m0 == 0:
        return (m0, m1), diff_ci, (math.nan, math.nan), p, label
    rel, rel_se = m1 / m0 - 1.0, math.sqrt(v1 / m0**2 + m1**2 * v0 / m0**4)
    return (m0, m1), diff_ci, (rel - z * rel_se, rel + z * rel_se), p, label


def bootstrap_interval(
    c0: np.ndarray, c1: np.ndarray, ratio: bool, alpha: float, n_boot: int, seed: int
) -> tuple[Interval, Interval, float, str]:
    """(diff CI, relative-lift CI, p-value, label): percentile intervals from resampled units."""
    rng = np.random.default_rng(seed)
    b0, b1 = _bootstrap(c0, ratio, n_boot, rng), _bootstrap(c1, ratio, n_boot, rng)
    q = (alpha / 2, 1 - alpha / 2)
    d = b1 - b0
    diff_ci = tuple(float(v) for v in np.nanquantile(d, q))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = b1 / b0 - 1.0
    r = r[np.isfinite(r)]
    rel_ci = tuple(float(v) for v in np.quantile(r, q)) if len(r) else (math.nan, math.nan)
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    p = float(min(1.0, 2 * (tail + 1) / (n_boot + 1)))  # never exactly 0 from finite draws
    return diff_ci, rel_ci, p, "bootstrap"  # type: ignore[return-value]


def _bootstrap(cols: np.ndarray, ratio: bool, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the cell estimate, shape (n_boot,); cols as in ``mean_and_var``."""
    n = cols.shape[1]
    block = max(1, _BOOT_BLOCK // n)
    out = []
    for start in range(0, n_boot, block):
        idx = rng.integers(0, n, size=(min(block, n_boot - start), n))
        sums = cols[:, idx].sum(axis=2)  # (k, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(sums[0] / sums[1] if ratio else sums[0] / n)
    return np.concatenate(out)
