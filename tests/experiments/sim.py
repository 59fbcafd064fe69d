"""Simulated experiment data whose true effects are known (tiny, seeded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from experiments.allocation import assign_cells
from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA
from pathways.config import ExperimentConfig

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def units(
    rng: np.random.Generator,
    n_control: int,
    n_treatment: int,
    *,
    mean_control: float = 5.0,
    mean_treatment: float = 5.0,
    rho: float = 0.0,
) -> pd.DataFrame:
    """A per-unit table with a skewed metric and a pre-period covariate of known correlation.

    ``y = mean_cell + 2 (rho z + sqrt(1 - rho^2) e)`` with z standard normal and e a centred
    unit exponential; ``pre_y = 5 + 2 z``. So E[y | cell] = mean_cell and corr(y, pre_y) = rho.
    """
    n = n_control + n_treatment
    cell = np.array(["control"] * n_control + ["challenger"] * n_treatment, dtype=object)
    z = rng.standard_normal(n)
    e = rng.exponential(1.0, n) - 1.0  # mean 0, sd 1, skewed
    mean = np.where(cell == "control", mean_control, mean_treatment)
    y = mean + 2.0 * (rho * z + np.sqrt(1.0 - rho**2) * e)
    return pd.DataFrame({"profile_id": np.arange(n), "cell": cell, "y": y, "pre_y": 5.0 + 2.0 * z})


def ratio_units(
    rng: np.random.Generator, n_control: int, n_treatment: int, p_control: float, p_treatment: float
) -> pd.DataFrame:
    """Impressions and plays per unit; each unit's play rate ~ Beta with its cell's mean, so the
    true ratio sum(plays)/sum(impressions) of a cell is its p (rates independent of impressions).
    """
    n = n_control + n_treatment
    cell = np.array(["control"] * n_control + ["challenger"] * n_treatment, dtype=object)
    p = np.where(cell == "control", p_control, p_treatment)
    rate = rng.beta(4.0 * p / (1 - p), 4.0)  # mean p
    impressions = rng.poisson(rng.gamma(2.0, 10.0, n)) + 1
    plays = rng.binomial(impressions, rate)
    return pd.DataFrame({"profile_id": np.arange(n), "cell": cell, "plays": plays, "impressions": impressions})


def world(
    seed: int, n_profiles: int, days: int, pre_days: int, config: ExperimentConfig, play_rate: dict[str, float]
) -> tuple[pa.Table, pa.Table]:
    """(events, profiles): profiles created before T0 - pre_days; from T0 - pre_days to T0 + days
    each profile gets Poisson(4) impressions a day, plays with its cell's rate (the same in the
    pre-period for everyone), fraction watched ~ U(0, 1) and a complete when it is > 0.9.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_profiles + 1, dtype=np.int64)
    cells = assign_cells(ids, config)
    first = T0 - timedelta(days=pre_days)
    profiles = pa.Table.from_pylist(
        [
            {"profile_id": int(p), "account_id": int(p), "is_kids": False, "region": "US",
             "max_maturity_level": 3, "devices": ["tv"], "created_at": first - timedelta(days=1)}
            for p in ids
        ],
        schema=PROFILE_SCHEMA,
    )
    rows = []
    taste = rng.gamma(2.0, 0.5, n_profiles)  # a profile's appetite, stable across periods
    for d in range(-pre_days, days):
        day = T0 + timedelta(days=d)
        n_imp = rng.poisson(4.0 * taste)
        for i, pid in enumerate(ids):
            rate = play_rate["control"] if d < 0 else play_rate[cells[i]]
            for k in range(n_imp[i]):
                ts = day + timedelta(minutes=int(rng.integers(0, 24 * 60)))
                rows.append(_event(len(rows), "impression", ts, pid, k))
                if rng.random() < rate:
                    frac = float(rng.random())
                    rows.append(_event(len(rows), "play", ts + timedelta(seconds=5), pid, k, frac))
                    if frac > 0.9:
                        rows.append(_event(len(rows), "complete", ts + timedelta(minutes=50), pid, k, 1.0))
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), profiles


def _event(i: int, kind: str, ts: datetime, pid: int, title: int, frac: float | None = None) -> dict:
    return {"event_id": f"e{i}", "event_type": kind, "ts": ts, "profile_id": int(pid),
            "title_id": int(title), "fraction_watched": frac}
