"""The nightly ALS model: the one ``ALS`` class on plays weighted by fraction watched, logged to MLflow.

Data: every ``play`` event with a title adds its ``fraction_watched`` (null counts 0) to the
(profile, title) cell; the confidence implicit sees is ``1 + als_alpha * sum(fraction)`` for every
pair that was played at least once, and 1 (preference 0) elsewhere (Hu, Koren & Volinsky 2008):
``ALS`` with ``weighting="confidence"`` and the ``training.als_*`` settings (``nightly_als``).

- ``interaction_matrix(events)`` -> (csr (n_profiles, n_titles) of summed fractions, ids, ids)
- ``fit_als(events, config)`` -> ``FactorArtifacts`` (factors + id maps; pathways/artifacts/factors.py)
- ``fold_in_als(artifacts, config, tables)`` -> the artifacts plus the profiles of ``tables`` (blocks
  of events of profiles the fit did not see), each solved against the fitted item factors
- ``train_als(events, config, out_dir, unsampled=...)``: fit, fold in the profiles a training
  sample left out, save to ``out_dir``, log params/metrics/model to MLflow, register it as ``als``
  with the ``champion`` alias; returns a summary dict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from features.schema import EventType
from pathways import tracking
from pathways.artifacts.factors import FactorArtifacts
from pathways.artifacts.registry import log_artifact_model
from pathways.config import TrainingConfig
from pathways.models_config import ALSConfig
from training.models.als import ALS, summed_pairs
from training.recommender import Interactions

__all__ = ["ALS_MODEL_NAME", "fit_als", "interaction_matrix", "nightly_als", "train_als"]

ALS_MODEL_NAME = "als"


def interaction_matrix(
    events: pa.Table, as_of: datetime | None = None
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Summed fraction watched per (profile, title) over play events (at or before ``as_of``).

    Returns (matrix (n_profiles, n_titles) float32 CSR with an explicit entry for every pair
    played at least once, profile_ids (n_profiles,) int64 sorted, title_ids (n_titles,) int64 sorted).
    """
    for column in ("event_type", "profile_id", "title_id", "fraction_watched", "ts"):
        if column not in events.column_names:
            raise ValueError(f"events lack the {column!r} column (expected EVENT_SCHEMA)")
    mask = pc.and_(pc.equal(events.column("event_type"), EventType.PLAY.value), pc.is_valid(events.column("title_id")))
    if as_of is not None:
        mask = pc.and_(mask, pc.less_equal(events.column("ts"), pa.scalar(as_of, events.schema.field("ts").type)))
    plays = events.filter(mask)
    profiles = plays.column("profile_id").to_numpy()
    titles = plays.column("title_id").to_numpy()
    fraction = np.nan_to_num(plays.column("fraction_watched").to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    if np.any(fraction < 0) or np.any(fraction > 1):
        raise ValueError("fraction_watched must lie in [0, 1]")
    profile_ids, rows = np.unique(profiles, return_inverse=True)
    title_ids, cols = np.unique(titles, return_inverse=True)
    matrix = summed_pairs(rows, cols, fraction, (len(profile_ids), len(title_ids)))
    return matrix, profile_ids.astype(np.int64), title_ids.astype(np.int64)


def nightly_als(config: TrainingConfig, num_threads: int = 1) -> ALS:
    """The nightly ALS: confidence ``1 + als_alpha * summed fraction``, ``config.als_*``, ``config.seed``.

    ``num_threads``: implicit's threads (0 = all cores). One is the default: on the 2-core
    machine two threads fitted the default world ~8x slower (bench/candidates.py).
    """
    settings = ALSConfig(
        factors=config.als_factors,
        regularization=config.als_regularization,
        alpha=config.als_alpha,
        iterations=config.als_iterations,
        weighting="confidence",
        num_threads=num_threads,
        calculate_training_loss=True,
    )
    return ALS(settings, seed=config.seed)


def fit_als(
    events: pa.Table, config: TrainingConfig, as_of: datetime | None = None, num_threads: int = 1
) -> FactorArtifacts:
    """Train the nightly ALS (``nightly_als``) on ``events`` (EVENT_SCHEMA) up to ``as_of``."""
    summed, profile_ids, title_ids = interaction_matrix(events, as_of)
    if summed.nnz == 0:
        raise ValueError("no play events with a title to train ALS on")
    coo = summed.tocoo()
    plays = Interactions(coo.row.astype(np.int64), coo.col.astype(np.int64), np.zeros(coo.nnz, np.int64),
                         len(profile_ids), len(title_ids), weights=coo.data)
    start = time.perf_counter()
    model = nightly_als(config, num_threads).fit(plays)
    seconds = time.perf_counter() - start
    params = {
        "factors": config.als_factors,
        "iterations": config.als_iterations,
        "regularization": config.als_regularization,
        "alpha": config.als_alpha,
        "seed": config.seed,
        "fit_seconds": round(seconds, 4),
        "nnz": int(summed.nnz),
        "final_loss": model.losses_[-1] if model.losses_ else float("nan"),
    }
    return FactorArtifacts(model.user_factors_, model.item_factors_, profile_ids, title_ids, params=params)


def fold_in_als(artifacts: FactorArtifacts, config: TrainingConfig, tables: Iterable[pa.Table]) -> FactorArtifacts:
    """``artifacts`` plus the factors of the profiles of ``tables`` (each a block of events; profiles
    not in ``artifacts``), solved against the fitted item factors (``ALS.fold_in``, the matrix
    ``interaction_matrix`` makes; plays of titles without factors are dropped); rows sorted by
    profile id. Cost: time linear in their plays x factors^2; memory one block plus the factors."""
    model = nightly_als(config)
    model.item_factors_ = artifacts.item_factors  # the fitted item side: fold-in solves users only
    pids, factors = [artifacts.profile_ids], [artifacts.user_factors]
    for events in tables:
        summed, profile_ids, title_ids = interaction_matrix(events)
        col = np.searchsorted(artifacts.title_ids, title_ids)
        coo = summed.tocoo()
        ok = np.isin(title_ids, artifacts.title_ids)[coo.col]
        inter = Interactions(coo.row[ok].astype(np.int64), col[coo.col[ok]].astype(np.int64),
                             np.zeros(int(ok.sum()), np.int64), len(profile_ids), len(artifacts.title_ids),
                             weights=coo.data[ok])
        pids.append(profile_ids)
        factors.append(model.fold_in(inter).user_factors_)
    all_pids = np.concatenate(pids)
    order = np.argsort(all_pids, kind="stable")
    if len(np.unique(all_pids)) != len(all_pids):
        raise ValueError("folded-in profiles overlap the trained ones or each other")
    return FactorArtifacts(np.concatenate(factors)[order], artifacts.item_factors, all_pids[order], artifacts.title_ids,
                           params={**artifacts.params, "folded_in": int(len(all_pids) - len(artifacts.profile_ids))})


def log_als(artifacts: FactorArtifacts, run_name: str, name: str = ALS_MODEL_NAME, alias: str | None = tracking.CHAMPION) -> tuple[str, str]:
    """Log params, metrics and the factors (a pyfunc model) to MLflow; register ``name@alias``.

    Returns (the logged model's URI, the registered version).
    """
    p = artifacts.params
    with mlflow.start_run(run_name=run_name):
        tracking.log_params_flat({k: p[k] for k in ("factors", "iterations", "regularization", "alpha", "seed") if k in p})
        mlflow.log_metrics(
            {
                "fit_seconds": float(p.get("fit_seconds", float("nan"))),
                "final_loss": float(p.get("final_loss", float("nan"))),
                "n_profiles": float(len(artifacts.profile_ids)),
                "n_titles": float(len(artifacts.title_ids)),
                "nnz": float(p.get("nnz", 0)),
            }
        )
        info = log_artifact_model("factors", artifacts, "als", tracking.PIP_REQUIREMENTS)
    version = tracking.register(info.model_uri, name, alias=alias, tags={"kind": "implicit-als"})
    return info.model_uri, version


def train_als(
    events: pa.Table,
    config: TrainingConfig,
    out_dir: Path | str,
    *,
    as_of: datetime | None = None,
    register: bool = True,
    name: str = ALS_MODEL_NAME,
    unsampled: Callable[[], Iterable[pa.Table]] | None = None,
) -> dict[str, Any]:
    """Fit, fold in the profiles of ``unsampled()`` (blocks of events of profiles left out of
    ``events``: ``fold_in_als``), save to ``out_dir`` (``FactorArtifacts.load(out_dir)`` reads it
    back), log and register.

    MLflow must already be configured (``pathways.tracking.configure``) when ``register`` is True.
    """
    artifacts = fit_als(events, config, as_of)
    if unsampled is not None:
        artifacts = fold_in_als(artifacts, config, unsampled())
    artifacts.save(out_dir)
    summary: dict[str, Any] = {
        "n_profiles": len(artifacts.profile_ids),
        "n_titles": len(artifacts.title_ids),
        **{k: v for k, v in artifacts.params.items() if k in ("nnz", "fit_seconds", "final_loss", "folded_in")},
    }
    if register:
        model_uri, version = log_als(artifacts, run_name=f"als-{Path(out_dir).name}", name=name)
        summary.update(model_uri=model_uri, version=version)
    return summary
