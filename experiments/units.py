"""The per-unit table of an A/B test: its columns, the metric kinds, and its validation.

One row per profile (pandas DataFrame or Arrow table):

=============  =======  =====================================================================
column         type     meaning
=============  =======  =====================================================================
profile_id     int      the randomization unit; unique
cell           str      the unit's cell (``experiments.allocation.assign_cell``)
<metric>       number   one column per metric, e.g. ``plays`` (no NaNs)
pre_<metric>   number   optional pre-period covariates for CUPED (no NaNs)
=============  =======  =====================================================================

``experiments.event_metrics.metrics_from_events`` builds it from the event log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

UNIT_ID = "profile_id"
CELL = "cell"


class ExperimentDataError(ValueError):
    """The per-unit table (or the counts) cannot be analysed as given."""


@dataclass(frozen=True)
class RatioMetric:
    """A ratio of sums, e.g. plays per impression: ``sum(numerator) / sum(denominator)``."""

    name: str
    numerator: str
    denominator: str


Metric = str | RatioMetric


def metric_name(metric: Metric) -> str:
    """The name a metric is reported under (the column, or the ratio's name)."""
    return metric.name if isinstance(metric, RatioMetric) else metric


def metric_columns(metric: Metric) -> tuple[str, ...]:
    """The columns a metric reads: (column,) or (numerator, denominator)."""
    return (metric.numerator, metric.denominator) if isinstance(metric, RatioMetric) else (metric,)


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


def check_alpha(alpha: float) -> None:
    """Raise ValueError unless the significance level is in (0, 1)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
