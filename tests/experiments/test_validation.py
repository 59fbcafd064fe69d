"""Bad inputs and the exact errors they raise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from experiments.cuped import cuped
from experiments.lift import lift
from experiments.report import analyze
from experiments.units import ExperimentDataError, RatioMetric
from pathways.config import ExperimentConfig
from tests.experiments import sim

CONFIG = ExperimentConfig()


def good() -> pd.DataFrame:
    df = sim.units(np.random.default_rng(40), 8, 4)
    return df.assign(plays=np.arange(12), impressions=np.arange(12) + 5)


def _nan(df, col):
    df.loc[3, col] = np.nan
    return df


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns="y"), r"missing column\(s\) \['y'\]"),
        (lambda d: d.drop(columns="cell"), r"missing column\(s\) \['cell'\]"),
        (lambda d: d.drop(columns="pre_y"), r"missing column\(s\) \['pre_y'\]"),
        (lambda d: d.assign(cell=d["cell"].replace("challenger", "challanger")), r"unknown cell\(s\) \['challanger'\]"),
        (lambda d: _nan(d, "y"), r"column 'y' has 1 NaN"),
        (lambda d: _nan(d, "pre_y"), r"column 'pre_y' has 1 NaN"),
        (lambda d: d.assign(y=np.inf), r"column 'y' has 12 NaN or infinite"),
        (lambda d: d.assign(y="3"), r"column 'y' must be numeric"),
        (lambda d: d.assign(y=True), r"column 'y' must be numeric"),
        (lambda d: d.assign(profile_id=0), r"'profile_id' must be unique.*11 duplicate"),
        (lambda d: d.assign(cell=d["cell"].where(d.index != 2, None)), r"column 'cell' has 1 null"),
        (lambda d: d.iloc[:9], r"cell 'challenger' has 1 unit\(s\); need at least 2"),
        (lambda d: d.iloc[:8], r"cell 'challenger' has 0 unit\(s\)"),
        (lambda d: d.to_dict(), r"expected a pandas DataFrame or pyarrow Table, got dict"),
    ],
)
def test_bad_unit_tables(mutate, message):
    with pytest.raises(ExperimentDataError, match=message):
        analyze(mutate(good()), ["y", RatioMetric("ppi", "plays", "impressions")], CONFIG, {"y": "pre_y"})


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda d: lift(d, "y", alpha=0.0), ValueError, r"alpha must be in \(0, 1\)"),
        (lambda d: lift(d, "y", alpha=1.5), ValueError, r"alpha must be in \(0, 1\)"),
        (lambda d: lift(d, "y", treatment="control"), ValueError, "must differ"),
        (lambda d: lift(d, "y", treatment="b"), ExperimentDataError, r"cell 'b' has 0 unit"),
        (lambda d: lift(d, "y", method="jackknife"), ValueError, "method must be"),
        (lambda d: lift(d, "y", method="bootstrap", n_boot=10), ValueError, "n_boot must be >= 100"),
        (lambda d: lift(d, RatioMetric("r", "plays", "impressions"), covariate="pre_y"), ValueError,
         "not supported for ratio"),
        (lambda d: lift(d.assign(impressions=0), RatioMetric("r", "plays", "impressions")), ExperimentDataError,
         r"denominator 'impressions' sums to 0 in cell 'control'"),
        (lambda d: cuped(d.iloc[:1], "y", "pre_y"), ExperimentDataError, "at least 2 units"),
        (lambda d: analyze(d, [], CONFIG), ValueError, "at least one metric"),
        (lambda d: analyze(d, ["y", "y"], CONFIG), ValueError, "must be unique"),
        (lambda d: analyze(d, ["y"], CONFIG, {"z": "pre_y"}), ValueError, r"unknown metric\(s\) \['z'\]"),
        (lambda d: analyze(d, ["y"], CONFIG, control="base"), ValueError, "control cell 'base' is not"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(good())


def test_arrow_and_pandas_inputs_agree():
    df = good()
    a = analyze(df, ["y"], CONFIG, {"y": "pre_y"})
    b = analyze(pa.Table.from_pandas(df), ["y"], CONFIG, {"y": "pre_y"})
    assert a.results == b.results and a.srm == b.srm


def test_other_cells_are_ignored_by_lift():
    df = pd.concat([good(), good().assign(profile_id=lambda d: d["profile_id"] + 100, cell="other", y=1e6)])
    assert lift(df, "y") == lift(good(), "y")
