"""Retrieval models for the nightly job: fit registered models, export their user and item vectors.

``train_retrieval(events, title_ids, out_dir, names, models, seed, run_id)`` fits each named model
(``training.registry``; by default the two-tower and SASRec) on the lake's interactions, saves its
vectors as ``FactorArtifacts`` under ``out_dir / name`` so the pages stage retrieves from them
through faiss like ALS (``candidates.als.FactorSource``), and logs one MLflow run per model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import mlflow
import numpy as np
import pyarrow as pa

from pathways import tracking
from pathways.artifacts.factors import FactorArtifacts
from pathways.models_config import ModelsConfig
from training.data import interactions_from_events
from training.registry import BuildContext, build

RETRIEVAL_MODELS = ("two_tower", "sasrec")


@runtime_checkable
class VectorModel(Protocol):
    """A model that exports (user vectors (n, d), item vectors (n_items, d)) for inner-product retrieval."""

    def retrieval_vectors(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def train_retrieval(
    events: pa.Table,
    title_ids: np.ndarray,
    out_dir: Path,
    names: tuple[str, ...] = RETRIEVAL_MODELS,
    models: ModelsConfig | None = None,
    seed: int = 0,
    run_id: str = "",
) -> dict[str, Any]:
    """Fit, export and log each model of ``names``; returns facts (interactions, dir, seconds per model).

    MLflow must already be configured (``pathways.tracking.configure``).
    """
    inter = interactions_from_events(events, item_ids=title_ids)
    users = np.arange(inter.n_users)
    ctx = BuildContext(models=models or ModelsConfig(), seed=seed)
    out: dict[str, Any] = {"interactions": len(inter), "dir": str(out_dir)}
    for name in names:
        with mlflow.start_run(run_name=f"{name}-{run_id}"):
            t0 = time.perf_counter()
            model = build(name, ctx).fit(inter)
            seconds = time.perf_counter() - t0
            if not isinstance(model, VectorModel):
                raise TypeError(f"{name} exports no user/item vectors (retrieval_vectors)")
            user_vecs, item_vecs = model.retrieval_vectors(users)
            FactorArtifacts(user_vecs, item_vecs, inter.user_ids, inter.item_ids, {"fit_seconds": seconds}).save(
                out_dir / name)
            tracking.log_params_flat(getattr(model, "get_params", dict)())
            mlflow.log_metrics({"fit_seconds": seconds, "n_interactions": float(len(inter))})
        out[f"{name}_seconds"] = round(seconds, 2)
    return out
