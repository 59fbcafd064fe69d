"""Sample-ratio mismatch: a chi-square test of observed cell sizes against the configured shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from experiments.units import ExperimentDataError

SRM_THRESHOLD = 1e-3  # p-values below it flag a sample-ratio mismatch


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
