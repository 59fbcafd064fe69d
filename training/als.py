"""The nightly ALS model: implicit's AlternatingLeastSquares on plays weighted by fraction watched.

Data: every ``play`` event with a title adds its ``fraction_watched`` (null counts 0) to the
(profile, title) cell; the confidence implicit sees is ``1 + als_alpha * sum(fraction)`` for every
pair that was played at least once, and 1 (preference 0) elsewhere (Hu, Koren & Volinsky 2008).
implicit's own ``alpha`` stays 1 so that the formula above is exactly what is fitted.

- ``interaction_matrix(events)`` -> (csr (n_profiles, n_titles) of summed fractions, ids, ids)
- ``fit_als(events, config)`` -> ``AlsArtifacts`` (factors + id maps; defined in candidates/als.py)
- ``train_als(events, config, out_dir)``: fit, save to ``out_dir``, log params/metrics/model to
  MLflow, register it as ``als`` with the ``champion`` alias; returns a summary dict.
- ``AlsRecommender``: the same model behind ``training.recommender.Recommender`` for evaluation.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from candidates.als import AlsArtifacts, als_pyfunc_class
from features.schema import EventType
from pathways.config import TrainingConfig
from training import tracking
from training.recommender import Interactions

__all__ = ["ALS_MODEL_NAME", "AlsArtifacts", "AlsRecommender", "fit_als", "interaction_matrix", "train_als"]

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


def summed_pairs(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR of ``weights`` summed per (row, col), with a stored entry for every pair seen, even a 0 sum."""
    n_cols = max(shape[1], 1)
    pair, inverse = np.unique(np.asarray(rows, np.int64) * n_cols + np.asarray(cols, np.int64), return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(weights, np.float64), minlength=len(pair))
    return sp.csr_matrix((sums.astype(np.float32), (pair // n_cols, pair % n_cols)), shape=shape)


def _fit(confidence: sp.csr_matrix, config: TrainingConfig, num_threads: int, losses: list[float]) -> AlternatingLeastSquares:
    with threadpool_limits(1, "blas"):  # implicit checks BLAS threads when constructed, and fits faster
        model = AlternatingLeastSquares(
            factors=config.als_factors,
            regularization=config.als_regularization,
            alpha=1.0,  # the confidence matrix already holds 1 + als_alpha * fraction
            iterations=config.als_iterations,
            calculate_training_loss=True,
            num_threads=num_threads,
            random_state=config.seed,
        )
        model.fit(confidence, show_progress=False, callback=lambda it, secs, loss: losses.append(float(loss)))
    return model


def confidence_matrix(summed_fraction: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """``1 + alpha * summed_fraction`` on the stored entries (the played pairs), CSR float32."""
    c = summed_fraction.astype(np.float32).tocsr(copy=True)
    c.data = 1.0 + alpha * c.data
    return c


def fit_als(
    events: pa.Table, config: TrainingConfig, as_of: datetime | None = None, num_threads: int = 1
) -> AlsArtifacts:
    """Train ALS on ``events`` (EVENT_SCHEMA) with ``config.als_*`` and ``config.seed``.

    ``num_threads``: implicit's threads (0 = all cores). One is the default: on the 2-core
    machine two threads fitted the default world ~8x slower (bench/candidates.py).
    """
    summed, profile_ids, title_ids = interaction_matrix(events, as_of)
    if summed.nnz == 0:
        raise ValueError("no play events with a title to train ALS on")
    losses: list[float] = []
    start = time.perf_counter()
    model = _fit(confidence_matrix(summed, config.als_alpha), config, num_threads, losses)
    seconds = time.perf_counter() - start
    params = {
        "factors": config.als_factors,
        "iterations": config.als_iterations,
        "regularization": config.als_regularization,
        "alpha": config.als_alpha,
        "seed": config.seed,
        "fit_seconds": round(seconds, 4),
        "nnz": int(summed.nnz),
        "final_loss": losses[-1] if losses else float("nan"),
    }
    return AlsArtifacts(model.user_factors, model.item_factors, profile_ids, title_ids, params=params)


def _signature():
    """Input: a ``profile_id`` column; param ``k`` (default 10): how many title ids per profile."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("long", "profile_id")]), params=ParamSchema([ParamSpec("k", "long", 10)]))


def log_als(artifacts: AlsArtifacts, run_name: str, name: str = ALS_MODEL_NAME, alias: str | None = tracking.CHAMPION) -> tuple[str, str]:
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
        with tempfile.TemporaryDirectory() as tmp:
            path = artifacts.save(Path(tmp) / "als")
            info = mlflow.pyfunc.log_model(
                name="als",
                python_model=als_pyfunc_class()(),
                artifacts={"als": str(path)},
                pip_requirements=tracking.PIP_REQUIREMENTS,
                signature=_signature(),
            )
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
) -> dict[str, Any]:
    """Fit, save to ``out_dir`` (``AlsArtifacts.load(out_dir)`` reads it back), log and register.

    MLflow must already be configured (``training.tracking.configure``) when ``register`` is True.
    """
    artifacts = fit_als(events, config, as_of)
    artifacts.save(out_dir)
    summary: dict[str, Any] = {
        "n_profiles": len(artifacts.profile_ids),
        "n_titles": len(artifacts.title_ids),
        **{k: v for k, v in artifacts.params.items() if k in ("nnz", "fit_seconds", "final_loss")},
    }
    if register:
        model_uri, version = log_als(artifacts, run_name=f"als-{Path(out_dir).name}", name=name)
        summary.update(model_uri=model_uri, version=version)
    return summary


class AlsRecommender:
    """ALS behind the ``Recommender`` protocol: ``fit(Interactions)``, ``score(users)``.

    Interaction weights (fraction watched; 0 when absent) are summed per pair and turned into
    confidences exactly as in ``fit_als``.
    """

    name = "als"

    def __init__(self, config: TrainingConfig, num_threads: int = 1):
        self.config = config
        self.num_threads = num_threads

    def fit(self, train: Interactions) -> "AlsRecommender":
        w = np.zeros(len(train), np.float32) if train.weights is None else np.asarray(train.weights, np.float32)
        summed = summed_pairs(train.users, train.items, w, (train.n_users, train.n_items))
        self.losses_: list[float] = []
        model = _fit(confidence_matrix(summed, self.config.als_alpha), self.config, self.num_threads, self.losses_)
        self.user_factors_ = np.asarray(model.user_factors, np.float32)
        self.item_factors_ = np.asarray(model.item_factors, np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 inner products."""
        return self.user_factors_[np.asarray(users, np.int64)] @ self.item_factors_.T
