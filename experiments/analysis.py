"""A/B test analysis for analysts: sample-ratio check, lifts with intervals, CUPED, reports.

The input is a per-unit table (one row per profile; pandas DataFrame or Arrow table):

=============  =======  =====================================================================
column         type     meaning
=============  =======  =====================================================================
profile_id     int      the randomization unit; unique
cell           str      the unit's cell (``experiments.allocation.assign_cell``)
<metric>       number   one column per metric, e.g. ``plays`` (no NaNs)
pre_<metric>   number   optional pre-period covariates for CUPED (no NaNs)
=============  =======  =====================================================================

``metrics_from_events`` builds it from the event log; ``analyze`` runs the sample-ratio check
and every metric into a ``Report``. Estimators (formulas in ``docs/experiments.md``):

- absolute difference of means: Welch's t interval;
- relative lift ``mean_t / mean_c - 1``: the delta method (normal interval);
- ratio metrics (``sum(num) / sum(den)`` per cell, e.g. plays per impression): delta method;
- CUPED: ``y - theta (x - mean(x))`` with ``theta = cov(y, x) / var(x)`` on the pooled units;
- a seeded percentile bootstrap (resampling units within each cell) for any of the above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from experiments.allocation import assign_cells
from pathways.config import ExperimentConfig

UNIT_ID = "profile_id"
CELL = "cell"
SRM_THRESHOLD = 1e-3  # p-values below it flag a sample-ratio mismatch
_BOOT_BLOCK = 2_000_000  # resampled values drawn at once (memory bound of the bootstrap)


class ExperimentDataError(ValueError):
    """The per-unit table (or the counts) cannot be analysed as given."""


@dataclass(frozen=True)
class RatioMetric:
    """A ratio of sums, e.g. plays per impression: ``sum(numerator) / sum(denominator)``."""

    name: str
    numerator: str
    denominator: str


Metric = str | RatioMetric


def _metric_name(metric: Metric) -> str:
    return metric.name if isinstance(metric, RatioMetric) else metric


def _metric_columns(metric: Metric) -> tuple[str, ...]:
    return (metric.numerator, metric.denominator) if isinstance(metric, RatioMetric) else (metric,)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def validate_units(
    data: pd.DataFrame | pa.Table,
    columns: Sequence[str],
    *,
    cells: Sequence[str] | None = None,
    required: Sequence[str] = (),
) -> pd.DataFrame:
    """Check a per-unit table and return it as a DataFrame (a copy; ``cell`` as str).

    ``columns``: the numeric columns needed (metrics, covariates); ``cells``: the allowed cell
    names (None: any); ``required``: cells that must hold at least 2 units.
    Raises ``ExperimentDataError`` naming the bad column, cell or value.
    """
    if isinstance(data, pa.Table):
        data = data.to_pandas()
    if not isinstance(data, pd.DataFrame):
        raise ExperimentDataError(f"expected a pandas DataFrame or pyarrow Table, got {type(data).__name__}")
    needed = [UNIT_ID, CELL, *dict.fromkeys(columns)]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ExperimentDataError(f"missing column(s) {missing}; the table has {list(data.columns)}")
    frame = data[needed].copy()
    if frame[UNIT_ID].isna().any():
        raise ExperimentDataError(f"column '{UNIT_ID}' has {int(frame[UNIT_ID].isna().sum())} null value(s)")
    dupes = frame[UNIT_ID][frame[UNIT_ID].duplicated()]
    if len(dupes):
        raise ExperimentDataError(
            f"column '{UNIT_ID}' must be unique (one row per unit); {len(dupes)} duplicate(s), "
            f"e.g. {dupes.iloc[0]!r}"
        )
    if frame[CELL].isna().any():
        raise ExperimentDataError(f"column '{CELL}' has {int(frame[CELL].isna().sum())} null value(s)")
    frame[CELL] = frame[CELL].astype(str)
    if cells is not None:
        unknown = sorted(set(frame[CELL]) - set(cells))
        if unknown:
            raise ExperimentDataError(f"unknown cell(s) {unknown}; expected one of {sorted(cells)}")
    for col in dict.fromkeys(columns):
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            raise ExperimentDataError(f"column '{col}' must be numeric, got dtype {frame[col].dtype}")
        values = frame[col].to_numpy(dtype=float)
        n_bad = int((~np.isfinite(values)).sum())
        if n_bad:
            raise ExperimentDataError(f"column '{col}' has {n_bad} NaN or infinite value(s)")
    sizes = frame[CELL].value_counts()
    for cell in dict.fromkeys(required):
        n = int(sizes.get(cell, 0))
        if n < 2:
            raise ExperimentDataError(
                f"cell '{cell}' has {n} unit(s); need at least 2 (cells present: {sorted(sizes.index)})"
            )
    return frame


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


# ---------------------------------------------------------------------------------------------
# Sample-ratio mismatch
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SRMResult:
    """Chi-square goodness of fit of observed cell sizes to the configured shares."""

    counts: dict[str, int]
    expected_counts: dict[str, float]
    chi2: float
    p_value: float
    threshold: float = SRM_THRESHOLD

    @property
    def flagged(self) -> bool:
        """True when the split is implausible under the configured shares (p < threshold)."""
        return self.p_value < self.threshold


def sample_ratio_check(
    counts: dict[str, int], expected: dict[str, float], threshold: float = SRM_THRESHOLD
) -> SRMResult:
    """Test observed ``counts`` per cell against ``expected`` shares (normalized to sum 1).

    A cell with share 0 and units in it is a certain mismatch (p = 0).
    """
    unknown = sorted(set(counts) - set(expected))
    if unknown:
        raise ExperimentDataError(f"counts name cell(s) {unknown} absent from expected {sorted(expected)}")
    if any(s < 0 or not math.isfinite(s) for s in expected.values()) or sum(expected.values()) <= 0:
        raise ExperimentDataError(f"expected shares must be finite, >= 0 and not all 0, got {expected}")
    if any(int(c) != c or c < 0 for c in counts.values()):
        raise ExperimentDataError(f"counts must be non-negative integers, got {counts}")
    names = sorted(expected)
    observed = np.array([int(counts.get(k, 0)) for k in names], dtype=float)
    total = observed.sum()
    if total <= 0:
        raise ExperimentDataError("counts are all zero: nothing to check")
    shares = np.array([expected[k] for k in names], dtype=float) / sum(expected.values())
    exp_counts = shares * total
    live = shares > 0
    if (observed[~live] > 0).any():
        chi2, p = math.inf, 0.0
    elif live.sum() < 2:
        chi2, p = 0.0, 1.0
    else:
        res = stats.chisquare(observed[live], f_exp=exp_counts[live])
        chi2, p = float(res.statistic), float(res.pvalue)
    return SRMResult(
        counts={k: int(v) for k, v in zip(names, observed)},
        expected_counts={k: float(v) for k, v in zip(names, exp_counts)},
        chi2=chi2,
        p_value=p,
        threshold=threshold,
    )


# ---------------------------------------------------------------------------------------------
# CUPED
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CupedResult:
    """``adjusted = y - theta (x - mean(x))``, shape (n,), index as the input rows."""

    adjusted: pd.Series
    theta: float
    variance_reduction: float  # 1 - var(adjusted) / var(y), pooled; about corr(x, y)^2
    correlation: float


def _cuped_arrays(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float, float, float]:
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
    adjusted, theta, reduction, corr = _cuped_arrays(y, x)
    return CupedResult(pd.Series(adjusted, index=frame.index, name=metric), theta, reduction, corr)


# ---------------------------------------------------------------------------------------------
# Lift
# ---------------------------------------------------------------------------------------------
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
        return self.p_value < self.alpha




def _mean_and_var(cols: np.ndarray, ratio: bool) -> tuple[float, float]:
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


def _analytic_interval(
    c0: np.ndarray, c1: np.ndarray, ratio: bool, alpha: float
) -> tuple[tuple[float, float], Interval, Interval, float, str]:
    """((m0, m1), diff CI, relative-lift CI, p-value, label) for control/treatment columns c0, c1.

    Difference: Welch t (means) or normal (ratios, delta-method variances). Relative lift
    m1/m0 - 1: delta method, Var ~ v1/m0^2 + m1^2 v0/m0^4, normal interval (NaN if m0 == 0).
    """
    (m0, v0), (m1, v1) = _mean_and_var(c0, ratio), _mean_and_var(c1, ratio)
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


def _bootstrap_interval(
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
    """Bootstrap replicates of the cell estimate, shape (n_boot,); cols as in ``_mean_and_var``."""
    n = cols.shape[1]
    block = max(1, _BOOT_BLOCK // n)
    out = []
    for start in range(0, n_boot, block):
        idx = rng.integers(0, n, size=(min(block, n_boot - start), n))
        sums = cols[:, idx].sum(axis=2)  # (k, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(sums[0] / sums[1] if ratio else sums[0] / n)
    return np.concatenate(out)


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
    _check_alpha(alpha)
    if control == treatment:
        raise ValueError(f"control and treatment must differ, both are '{control}'")
    if method not in ("analytic", "bootstrap"):
        raise ValueError(f"method must be 'analytic' or 'bootstrap', got {method!r}")
    if method == "bootstrap" and n_boot < 100:
        raise ValueError(f"n_boot must be >= 100, got {n_boot}")
    ratio = isinstance(metric, RatioMetric)
    if ratio and covariate is not None:
        raise ValueError(f"covariate adjustment is not supported for ratio metric '{_metric_name(metric)}'")
    columns = [*_metric_columns(metric), *([covariate] if covariate else [])]
    frame = validate_units(df, columns, required=(control, treatment))
    cell = frame[CELL].to_numpy()
    keep = (cell == control) | (cell == treatment)
    cell = cell[keep]
    values = frame[list(_metric_columns(metric))].to_numpy(dtype=float)[keep].T  # (1 or 2, n)
    theta = reduction = None
    if covariate is not None:
        adjusted, theta, reduction, _ = _cuped_arrays(values[0], frame[covariate].to_numpy(dtype=float)[keep])
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
        m0, m1 = (_mean_and_var(c, ratio)[0] for c in (c0, c1))
        diff_ci, rel_ci, p, label = _bootstrap_interval(c0, c1, ratio, alpha, n_boot, seed)
    else:
        (m0, m1), diff_ci, rel_ci, p, label = _analytic_interval(c0, c1, ratio, alpha)
    rel = m1 / m0 - 1.0 if m0 != 0 else math.nan
    return LiftResult(
        metric=_metric_name(metric),
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


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _clean(value: object) -> object:
    """JSON-safe: NaN/inf to None, tuples to lists, timestamps to ISO strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.2f}%"


@dataclass(frozen=True, eq=False)
class Report:
    """Everything ``analyze`` found: the SRM check and one ``LiftResult`` per (metric, treatment).

    ``cumulative`` (optional, from ``cumulative_lift``): one row per (day, metric, treatment).
    """

    experiment: str
    alpha: float
    cells: dict[str, int]  # units per cell
    srm: SRMResult
    results: tuple[LiftResult, ...]
    cumulative: pd.DataFrame | None = None

    def table(self) -> str:
        """A fixed-width text report for a terminal."""
        ci = f"{100 * (1 - self.alpha):g}% CI"
        sizes = ", ".join(f"{c} {n}" for c, n in self.cells.items())
        total = sum(self.srm.expected_counts.values())
        shares = ", ".join(f"{c} {v:.0f} ({100 * v / total:.1f}%)" for c, v in self.srm.expected_counts.items())
        verdict = "MISMATCH: do not trust the lifts below" if self.srm.flagged else "ok"
        lines = [
            f"experiment {self.experiment}: units {sizes}",
            f"sample ratio: chi2={self.srm.chi2:.2f} p={self.srm.p_value:.4g} (expected {shares}) {verdict}",
            "",
            f"{'metric':<22}{'cell':<12}{'control':>10}{'treat':>10}{'diff [' + ci + ']':>34}"
            f"{'lift [' + ci + ']':>34}{'p':>9}  method",
        ]
        for r in self.results:
            diff = f"{r.diff:+.4g} [{r.diff_ci[0]:+.4g}, {r.diff_ci[1]:+.4g}]"
            rel = f"{_pct(r.rel_lift)} [{_pct(r.rel_ci[0])}, {_pct(r.rel_ci[1])}]"
            how = r.method + ("*" if r.significant else "")
            if r.covariate:
                how += f" CUPED({r.covariate}, theta={r.theta:.3g}, var -{100 * (r.variance_reduction or 0):.0f}%)"
            lines.append(
                f"{r.metric:<22}{r.treatment:<12}{r.mean_control:>10.4g}{r.mean_treatment:>10.4g}"
                f"{diff:>34}{rel:>34}{r.p_value:>9.3g}  {how}"
            )
        lines.append(f"(* p < {self.alpha:g})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        srm = {**self.srm.__dict__, "flagged": self.srm.flagged}
        results = [{**r.__dict__, "significant": r.significant} for r in self.results]
        out: dict[str, object] = {
            "experiment": self.experiment,
            "alpha": self.alpha,
            "cells": self.cells,
            "srm": srm,
            "results": results,
        }
        if self.cumulative is not None:
            out["cumulative"] = self.cumulative.to_dict(orient="records")
        return _clean(out)  # type: ignore[return-value]

    def to_json(self, indent: int = 2) -> str:
        import json

        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def analyze(
    df: pd.DataFrame | pa.Table,
    metrics: Sequence[Metric],
    config: ExperimentConfig,
    covariates: Mapping[str, str] | None = None,
    *,
    alpha: float = 0.05,
    control: str = "control",
    method: Literal["analytic", "bootstrap"] = "analytic",
    n_boot: int = 2000,
    seed: int = 0,
) -> Report:
    """SRM check against ``config.cells`` plus ``lift`` of every metric for every non-control cell.

    ``covariates``: metric name -> pre-period column for CUPED (plain metrics only).
    """
    _check_alpha(alpha)
    if not metrics:
        raise ValueError("metrics must name at least one metric")
    names = [_metric_name(m) for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"metric names must be unique, got {names}")
    covariates = dict(covariates or {})
    stray = sorted(set(covariates) - set(names))
    if stray:
        raise ValueError(f"covariates given for unknown metric(s) {stray}; metrics are {names}")
    if control not in config.cells:
        raise ValueError(f"control cell '{control}' is not in the experiment's cells {sorted(config.cells)}")
    live = [c for c, share in sorted(config.cells.items()) if share > 0]
    columns = [c for m in metrics for c in _metric_columns(m)] + list(covariates.values())
    frame = validate_units(df, columns, cells=list(config.cells), required=live)
    sizes = {c: int((frame[CELL] == c).sum()) for c in sorted(config.cells)}
    srm = sample_ratio_check(sizes, dict(config.cells))
    results = tuple(
        lift(frame, m, control, t, alpha, covariate=covariates.get(_metric_name(m)),
             method=method, n_boot=n_boot, seed=seed)
        for m in metrics
        for t in live
        if t != control
    )
    return Report(config.name, alpha, sizes, srm, results)


# ---------------------------------------------------------------------------------------------
# From the event log
# ---------------------------------------------------------------------------------------------
EVENT_METRICS = ("plays", "watch_fraction", "completes", "impressions")  # per profile, per window
PLAYS_PER_IMPRESSION = RatioMetric("plays_per_impression", "plays", "impressions")
DEFAULT_METRICS: tuple[Metric, ...] = (*EVENT_METRICS, PLAYS_PER_IMPRESSION)
_EVENT_COLUMNS = ("profile_id", "event_type", "ts", "fraction_watched")


def to_utc(value: object, name: str) -> pd.Timestamp:
    """``value`` (ISO 8601 string, datetime or Timestamp) as a UTC Timestamp; naive means UTC."""
    try:
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from exc
    if pd.isna(ts):
        raise ValueError(f"{name}: not an ISO 8601 time: {value!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _event_frame(events: pa.Table) -> pd.DataFrame:
    missing = [c for c in _EVENT_COLUMNS if c not in events.column_names]
    if missing:
        raise ExperimentDataError(f"events lack column(s) {missing} (see features/schema.py EVENT_SCHEMA)")
    frame = events.select(list(_EVENT_COLUMNS)).to_pandas()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _unit_frame(profiles: pa.Table, config: ExperimentConfig) -> pd.DataFrame:
    """Every profile with its cell (and creation time when known), shape (n_profiles, 2-3)."""
    if "profile_id" not in profiles.column_names:
        raise ExperimentDataError(f"profiles lack column 'profile_id'; they have {profiles.column_names}")
    ids = np.asarray(profiles.column("profile_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    units = pd.DataFrame({UNIT_ID: ids, CELL: assign_cells(ids, config).astype(str)})
    if "created_at" in profiles.column_names:
        units["created_at"] = pd.to_datetime(profiles.column("created_at").to_pandas(), utc=True)
    return units.drop_duplicates(UNIT_ID).reset_index(drop=True)


def _window_counts(ev: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
    """Per-profile EVENT_METRICS over events with lo <= ts < hi, indexed by profile_id."""
    w = ev[(ev["ts"] >= lo) & (ev["ts"] < hi)]
    is_play = (w["event_type"] == "play").to_numpy()
    per_event = pd.DataFrame(
        {
            UNIT_ID: w[UNIT_ID].to_numpy(),
            "plays": is_play.astype(np.int64),
            "watch_fraction": np.where(is_play, w["fraction_watched"].fillna(0.0).to_numpy(dtype=float), 0.0),
            "completes": (w["event_type"] == "complete").to_numpy().astype(np.int64),
            "impressions": (w["event_type"] == "impression").to_numpy().astype(np.int64),
        }
    )
    return per_event.groupby(UNIT_ID).sum()


def _metrics_frame(
    ev: pd.DataFrame, units: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp, pre: pd.Timestamp | None
) -> pd.DataFrame:
    if "created_at" in units.columns:
        units = units[units["created_at"] < hi]
    frame = units[[UNIT_ID, CELL]].reset_index(drop=True)
    windows = [("", lo, hi)] + ([("pre_", pre, lo)] if pre is not None else [])
    for prefix, a, b in windows:
        counts = _window_counts(ev, a, b).reindex(frame[UNIT_ID], fill_value=0)
        for col in EVENT_METRICS:
            frame[prefix + col] = counts[col].to_numpy()
    return frame


def _check_window(
    start: object, end: object, pre_start: object | None
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp | None]:
    """(start, end, pre_start) as UTC Timestamps, checked pre_start < start < end."""
    lo, hi = to_utc(start, "start"), to_utc(end, "end")
    if lo >= hi:
        raise ValueError(f"start ({lo.isoformat()}) must be before end ({hi.isoformat()})")
    pre = None if pre_start is None else to_utc(pre_start, "pre_start")
    if pre is not None and pre >= lo:
        raise ValueError(f"pre_start ({pre.isoformat()}) must be before start ({lo.isoformat()})")
    return lo, hi, pre


def metrics_from_events(
    events: pa.Table,
    profiles: pa.Table,
    config: ExperimentConfig,
    start: object,
    end: object,
    pre_start: object | None = None,
) -> pd.DataFrame:
    """The per-unit table from an event log (EVENT_SCHEMA) and profiles (PROFILE_SCHEMA).

    One row per profile created before ``end`` (intent to treat: profiles without events count
    as zeros), its cell from ``assign_cells``, and over ``start <= ts < end``: ``plays`` (play
    events), ``watch_fraction`` (sum of ``fraction_watched`` over plays; a minutes-watched
    proxy), ``completes`` and ``impressions``; with ``pre_start``, the same over
    ``pre_start <= ts < start`` as ``pre_<metric>`` covariates.
    """
    lo, hi, pre = _check_window(start, end, pre_start)
    return _metrics_frame(_event_frame(events), _unit_frame(profiles, config), lo, hi, pre)


def cumulative_lift(
    events: pa.Table,
    profiles: pa.Table,
    config: ExperimentConfig,
    metrics: Sequence[Metric],
    start: object,
    end: object,
    pre_start: object | None = None,
    *,
    alpha: float = 0.05,
    control: str = "control",
) -> pd.DataFrame:
    """Lift of each metric on the data from ``start`` through the end of each day.

    Returns one row per (day, metric, treatment): day (1-based), through (Timestamp), metric,
    treatment, diff, diff_lo, diff_hi, rel_lift, rel_lo, rel_hi, p_value. CUPED with
    ``pre_<metric>`` when ``pre_start`` is given. Days where a cell has too little data are left out.
    """
    lo, hi, pre = _check_window(start, end, pre_start)
    ev, units = _event_frame(events), _unit_frame(profiles, config)
    treatments = [c for c, s in sorted(config.cells.items()) if s > 0 and c != control]
    rows = []
    n_days = math.ceil((hi - lo) / pd.Timedelta(days=1))
    for day in range(1, n_days + 1):
        through = min(lo + pd.Timedelta(days=day), hi)
        frame = _metrics_frame(ev, units, lo, through, pre)
        for m in metrics:
            cov = f"pre_{m}" if pre is not None and isinstance(m, str) else None
            for t in treatments:
                try:
                    r = lift(frame, m, control, t, alpha, covariate=cov)
                except ExperimentDataError:
                    continue
                rows.append(
                    {
                        "day": day, "through": through, "metric": r.metric, "treatment": t,
                        "diff": r.diff, "diff_lo": r.diff_ci[0], "diff_hi": r.diff_ci[1],
                        "rel_lift": r.rel_lift, "rel_lo": r.rel_ci[0], "rel_hi": r.rel_ci[1],
                        "p_value": r.p_value,
                    }
                )
    return pd.DataFrame(rows, columns=_CUMULATIVE_COLUMNS)


_CUMULATIVE_COLUMNS = [
    "day", "through", "metric", "treatment", "diff", "diff_lo", "diff_hi",
    "rel_lift", "rel_lo", "rel_hi", "p_value",
]


def analyze_events(
    events: pa.Table,
    profiles: pa.Table,
    config: ExperimentConfig,
    start: object | None = None,
    end: object | None = None,
    pre_start: object | None = None,
    *,
    metrics: Sequence[Metric] = DEFAULT_METRICS,
    alpha: float = 0.05,
    control: str = "control",
    daily: bool = True,
) -> Report:
    """``metrics_from_events`` + ``analyze`` (+ ``cumulative_lift`` when ``daily``).

    start/end default to the first event and just after the last one; with ``pre_start``, every
    plain metric is CUPED-adjusted with its ``pre_<metric>`` column.
    """
    if events.num_rows == 0:
        raise ExperimentDataError("the event table is empty: nothing to analyse")
    if start is None:
        if pre_start is not None:
            raise ValueError("pre_start needs an explicit start (the pre-period ends where the test starts)")
        start = pd.Timestamp(events.column("ts").to_pandas().min())
    if end is None:
        end = pd.Timestamp(events.column("ts").to_pandas().max()) + pd.Timedelta(milliseconds=1)
    lo, hi, pre = _check_window(start, end, pre_start)
    frame = metrics_from_events(events, profiles, config, lo, hi, pre)
    covariates = {m: f"pre_{m}" for m in metrics if isinstance(m, str) and pre is not None and f"pre_{m}" in frame}
    report = analyze(frame, metrics, config, covariates, alpha=alpha, control=control)
    if not daily:
        return report
    cumulative = cumulative_lift(events, profiles, config, metrics, lo, hi, pre, alpha=alpha, control=control)
    return Report(report.experiment, report.alpha, report.cells, report.srm, report.results, cumulative)
