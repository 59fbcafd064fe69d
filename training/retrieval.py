"""Retrieval models for the nightly job: fit registered models, export their user and item vectors.

``train_retrieval(events, title_ids, out_dir, names, models, seed, run_id)`` fits each named model
(``training.registry``; by default the two-tower and SASRec) on the lake's interactions, saves its
vectors as ``FactorArtifacts`` under ``out_dir / name`` so the pages stage retrieves from them
through faiss like ALS (``candidates.als.FactorSource``), and logs one MLflow run per model.
With ``unsampled`` (blocks of events of profiles a training sample left out) each model also
encodes those profiles from their histories (``fold_in``, no retraining), so the vectors cover
every profile. Each early-stopped model named in ``share`` is also saved as fit, with the key of
its fit (``training.shared_fit``; fit on the top row's item features where it reads them), so the
top row takes it instead of fitting it again: one SASRec and one two-tower fit a night. Cost: the
fit grows with the training interactions; the fold-in is linear in the left-out profiles'
interactions, one block in memory plus the vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import mlflow
import numpy as np
import pyarrow as pa

from pathways import tracking
from pathways.artifacts.factors import FactorArtifacts
from pathways.models_config import ModelsConfig
from training.data import fold_in_blocks, interactions_from_events
from training.models.torch_utils import EarlyStoppedModel
from training.recommender import FoldIn
from training.registry import BuildContext, build
from training.shared_fit import fit_key, save_shared

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
    unsampled: Callable[[], Iterable[pa.Table]] | None = None,
    share: tuple[str, ...] = (),
    item_features: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Fit, export and log each model of ``names``; returns facts (interactions, dir, seconds per model,
    ``<name>_shared``: the saved model of each early-stopped (``refit`` off) model of ``share``).
    ``item_features(item_ids)``: the titles' features, rows in ``item_ids`` order, given to the models
    that read them (``reads_item_features``: the two-tower), as the top row gives its generators the
    genres, so that its two-tower is this fit too.

    MLflow must already be configured (``pathways.tracking.configure``).
    """
    inter = interactions_from_events(events, item_ids=title_ids)
    users = np.arange(inter.n_users)
    ctx = BuildContext(models=models or ModelsConfig(), seed=seed)
    features = item_features(inter.item_ids) if item_features is not None else None
    out: dict[str, Any] = {"interactions": len(inter), "dir": str(out_dir)}
    for name in names:
        with mlflow.start_run(run_name=f"{name}-{run_id}"):
            t0 = time.perf_counter()
            model = build(name, ctx)
            reads = features if getattr(model, "reads_item_features", False) else None
            model = model.fit(inter) if reads is None else model.fit(inter, item_features=reads)
            seconds = time.perf_counter() - t0
            if not isinstance(model, VectorModel):
                raise TypeError(f"{name} exports no user/item vectors (retrieval_vectors)")
            user_vecs, item_vecs = model.retrieval_vectors(users)
            pids = inter.user_ids
            if unsampled is not None:
                user_vecs, pids = folded_in_vectors(model, user_vecs, pids, inter.item_ids, unsampled())
            FactorArtifacts(user_vecs, item_vecs, pids, inter.item_ids, {"fit_seconds": seconds}).save(out_dir / name)
            if name in share and isinstance(model, EarlyStoppedModel) and not model.config.refit:
                key = fit_key(model, inter, model.config.valid_k, reads)
                out[f"{name}_shared"] = str(save_shared(model, out_dir / f"{name}.shared", key))
            tracking.log_params_flat(getattr(model, "get_params", dict)())
            if hasattr(model, "bf16_"):  # what bf16 "auto" resolved to on this machine
                mlflow.log_param("bf16_used", model.bf16_)
            mlflow.log_metrics({"fit_seconds": seconds, "n_interactions": float(len(inter))})
        out[f"{name}_seconds"] = round(seconds, 2)
    return out


def folded_in_vectors(model: VectorModel, user_vecs: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray,
                      tables: Iterable[pa.Table]) -> tuple[np.ndarray, np.ndarray]:
    """``user_vecs`` (rows ``user_ids``) plus the vectors of the profiles of ``tables`` (blocks of
    events), each block folded into ``model`` (``FoldIn``); rows sorted by profile id."""
    if not isinstance(model, FoldIn):
        raise TypeError(f"{type(model).__name__} cannot fold in the profiles a training sample left out")
    vecs, pids = [user_vecs], [user_ids]
    for block in fold_in_blocks(tables, item_ids):
        folded = model.fold_in(block)
        vecs.append(folded.retrieval_vectors(np.arange(block.n_users))[0])
        pids.append(block.user_ids)
    all_pids = np.concatenate(pids)
    order = np.argsort(all_pids, kind="stable")
    return np.concatenate(vecs)[order], all_pids[order]
