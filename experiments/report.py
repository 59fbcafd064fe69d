"""The A/B report: the SRM check plus a lift per (metric, treatment) (``analyze``), as text or JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from experiments.lift import LiftResult, lift
from experiments.srm import SRMResult, sample_ratio_check
from experiments.units import CELL, Metric, check_alpha, metric_columns, metric_name, validate_units
from pathways.config import ExperimentConfig


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
    check_alpha(alpha)
    if not metrics:
        raise ValueError("metrics must name at least one metric")
    names = [metric_name(m) for m in metrics]
    if len(set(names)) != len(names):
        raise ValueError(f"metric names must be unique, got {names}")
    covariates = dict(covariates or {})
    stray = sorted(set(covariates) - set(names))
    if stray:
        raise ValueError(f"covariates given for unknown metric(s) {stray}; metrics are {names}")
    if control not in config.cells:
        raise ValueError(f"control cell '{control}' is not in the experiment's cells {sorted(config.cells)}")
    live = [c for c, share in sorted(config.cells.items()) if share > 0]
    columns = [c for m in metrics for c in metric_columns(m)] + list(covariates.values())
    frame = validate_units(df, columns, cells=list(config.cells), required=live)
    sizes = {c: int((frame[CELL] == c).sum()) for c in sorted(config.cells)}
    srm = sample_ratio_check(sizes, dict(config.cells))
    results = tuple(
        lift(frame, m, control, t, alpha, covariate=covariates.get(metric_name(m)),
             method=method, n_boot=n_boot, seed=seed)
        for m in metrics
        for t in live
        if t != control
    )
    return Report(config.name, alpha, sizes, srm, results)
