"""Sample-ratio mismatch: flags a broken split, passes the true one, rejects bad counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.allocation import assign_cells
from experiments.srm import sample_ratio_check
from experiments.units import ExperimentDataError
from pathways.config import ExperimentConfig


def test_52_48_at_100k_is_flagged_and_the_true_ratio_is_not():
    broken = sample_ratio_check({"control": 52_000, "challenger": 48_000}, {"control": 0.5, "challenger": 0.5})
    assert broken.flagged and broken.p_value < 1e-30
    exact = sample_ratio_check({"control": 50_000, "challenger": 50_000}, {"control": 0.5, "challenger": 0.5})
    assert not exact.flagged and exact.p_value == pytest.approx(1.0)
    assert exact.expected_counts == {"challenger": 50_000.0, "control": 50_000.0}


def test_p_value_is_scipys_chisquare():
    res = sample_ratio_check({"control": 8_100, "challenger": 1_900}, {"control": 0.8, "challenger": 0.2})
    ref = stats.chisquare([1_900, 8_100], f_exp=[2_000, 8_000])
    assert res.chi2 == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)


def test_allocation_passes_and_losing_challenger_units_is_flagged():
    config = ExperimentConfig()  # 80% control / 20% challenger
    cells = assign_cells(np.arange(20_000), config)
    counts = {c: int((cells == c).sum()) for c in config.cells}
    assert not sample_ratio_check(counts, dict(config.cells)).flagged
    lossy = {**counts, "challenger": int(counts["challenger"] * 0.93)}  # 7% of challenger pages lost
    assert sample_ratio_check(lossy, dict(config.cells)).flagged


def test_units_in_a_zero_share_cell_are_a_certain_mismatch():
    res = sample_ratio_check({"a": 10, "b": 10, "c": 1}, {"a": 0.5, "b": 0.5, "c": 0.0})
    assert res.flagged and res.p_value == 0.0


@pytest.mark.parametrize(
    ("counts", "expected", "message"),
    [
        ({"control": 5, "x": 5}, {"control": 0.5, "challenger": 0.5}, r"cell\(s\) \['x'\] absent"),
        ({"control": -1}, {"control": 0.5, "challenger": 0.5}, "non-negative integers"),
        ({"control": 1.5}, {"control": 0.5, "challenger": 0.5}, "non-negative integers"),
        ({"control": 0, "challenger": 0}, {"control": 0.5, "challenger": 0.5}, "all zero"),
        ({"control": 5}, {"control": -0.5, "challenger": 1.5}, "finite, >= 0"),
        ({"control": 5}, {"control": 0.0, "challenger": 0.0}, "not all 0"),
    ],
)
def test_bad_counts_are_rejected(counts, expected, message):
    with pytest.raises(ExperimentDataError, match=message):
        sample_ratio_check(counts, expected)
