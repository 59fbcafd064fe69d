"""Train the rankers on impressions (shown -> played or not) with point-in-time features.

The training frame has one row per impression: ``profile_id, title_id, event_timestamp, label``
plus feature columns joined point-in-time from the feature store. Validation is the last
``ranker_valid_fraction`` of impressions by time (no shuffling across time). Both kinds log to
MLflow and register under one model name; the caller sets the aliases. The artifact they produce
(``RankerArtifact``, ``MLP``) lives in ``pathways/artifacts/ranker.py``; every setting in
``TrainingConfig.ranker_*``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score

from pathways import tracking
from pathways.artifacts.ranker import MLP, RankerArtifact
from pathways.artifacts.registry import log_artifact_model
from pathways.config import TrainingConfig

RANKER_NAME = "ranker"


@dataclass(frozen=True)
class RankerTrainResult:
    artifact: RankerArtifact
    metrics: dict[str, float]
    model_uri: str | None = None
    version: str | None = None


def _split_by_time(frame: pd.DataFrame, valid_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = frame.sort_values("event_timestamp", kind="stable")
    cut = int(len(frame) * (1.0 - valid_fraction))
    return frame.iloc[:cut], frame.iloc[cut:]


def train_ranker(
    frame: pd.DataFrame,
    feature_cols: list[str],
    config: TrainingConfig,
    kind: str = "mlp",
) -> RankerTrainResult:
    """Fit a ranker of ``kind`` ('mlp' or 'gbdt') on ``frame``; returns it with validation metrics."""
    if kind not in ("mlp", "gbdt"):
        raise ValueError(f"kind must be 'mlp' or 'gbdt', got {kind!r}")
    missing = [c for c in [*feature_cols, "label", "event_timestamp"] if c not in frame.columns]
    if missing:
        raise ValueError(f"training frame lacks columns {missing}")
    if len(frame) < 20 or frame["label"].nunique() < 2:
        raise ValueError(f"need >= 20 impressions with both labels to train a ranker, got {len(frame)}")
    train, valid = _split_by_time(frame, config.ranker_valid_fraction)
    X = train[feature_cols].to_numpy(np.float32)
    y = train["label"].to_numpy(np.float32)
    mean = np.nanmean(X, axis=0).astype(np.float32)
    std = np.nanstd(X, axis=0).astype(np.float32)
    mean = np.nan_to_num(mean)
    std = np.where(np.nan_to_num(std) < 1e-6, 1.0, np.nan_to_num(std)).astype(np.float32)
    Xn = np.nan_to_num((X - mean) / std)
    t0 = time.perf_counter()
    if kind == "mlp":
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.torch_threads)
        model = MLP(len(feature_cols), config.ranker_hidden)
        opt = torch.optim.Adam(model.parameters(), lr=config.ranker_lr)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        Xt, yt = torch.from_numpy(Xn), torch.from_numpy(y)
        gen = torch.Generator().manual_seed(config.seed)
        for _ in range(config.ranker_epochs):
            order = torch.randperm(len(Xt), generator=gen)
            for start in range(0, len(Xt), config.ranker_batch_size):
                idx = order[start : start + config.ranker_batch_size]
                opt.zero_grad()
                loss_fn(model(Xt[idx]), yt[idx]).backward()
                opt.step()
        model.eval()
        fitted = model
    else:
        fitted = HistGradientBoostingClassifier(
            max_iter=config.ranker_gbdt_max_iter, learning_rate=config.ranker_gbdt_learning_rate, random_state=config.seed
        )
        fitted.fit(Xn, y)
    seconds = time.perf_counter() - t0
    artifact = RankerArtifact(kind, list(feature_cols), mean, std, fitted, hidden=config.ranker_hidden)  # type: ignore[arg-type]
    p = artifact.predict(valid[feature_cols].to_numpy(np.float32))
    yv = valid["label"].to_numpy()
    metrics = {
        "train_rows": float(len(train)),
        "valid_rows": float(len(valid)),
        "train_seconds": seconds,
        "valid_auc": float(roc_auc_score(yv, p)) if len(np.unique(yv)) > 1 else float("nan"),
        "valid_logloss": float(log_loss(yv, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "valid_base_rate": float(yv.mean()),
    }
    artifact.metrics = metrics
    return RankerTrainResult(artifact, metrics)


def log_ranker(result: RankerTrainResult, run_name: str, alias: str | None, params: dict[str, Any]) -> RankerTrainResult:
    """Log params, metrics and the model to MLflow; register it as RANKER_NAME with ``alias``."""
    with mlflow.start_run(run_name=run_name):
        tracking.log_params_flat({**params, "kind": result.artifact.kind, "n_features": len(result.artifact.feature_names)})
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)})
        info = log_artifact_model("ranker", result.artifact, "ranker", tracking.PIP_REQUIREMENTS + ["scikit-learn==1.9.1"])
    version = tracking.register(info.model_uri, RANKER_NAME, alias=alias, tags={"kind": result.artifact.kind})
    return RankerTrainResult(result.artifact, result.metrics, info.model_uri, version)
