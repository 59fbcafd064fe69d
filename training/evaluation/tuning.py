"""Hyperparameter search with Optuna on a validation split carved from train (never test).

``tune(spec, train, protocol, ctx, config)`` carves ``protocol.validation(train)``, then runs a
seeded TPE study: each trial builds the model with the trial's parameters, fits it on the
validation split's train part and scores ``config.metric`` (e.g. ``ndcg@20``) on its held-out
part. The defaults of the model are enqueued as the first trial, so the result is never worse
than the defaults on validation. Budget: ``config.trials`` trials or ``config.timeout_s`` seconds,
whichever ends first. The harness then refits the best parameters on the full train split.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from training.evaluation.metrics import hit_matrix, map_at_k, ndcg_at_k, recall_at_k
from training.evaluation.splits import Split, SplitProtocol
from training.recommender import Interactions, recommend
from training.registry import BuildContext, ModelSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)

METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "map": map_at_k}


@dataclass(frozen=True)
class TuningConfig:
    trials: int = 20
    timeout_s: float | None = 150.0
    seed: int = 0
    metric: str = "ndcg@20"

    def __post_init__(self) -> None:
        if self.trials < 0:
            raise ValueError(f"trials must be >= 0, got {self.trials}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        name, _, k = self.metric.partition("@")
        if name not in METRICS or not k.isdigit() or int(k) < 1:
            raise ValueError(f"metric must look like ndcg@20, recall@10 or map@20, got {self.metric!r}")


@dataclass(frozen=True)
class TuningResult:
    params: dict[str, Any]
    value: float | None  # best validation metric (None when nothing was tuned)
    n_trials: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)  # [{"params", "value"}] per trial


def accuracy(model: Any, split: Split, metric: str, batch: int = 1024) -> float:
    """``metric`` (``ndcg@20``…) of a fitted model on ``split``'s test users."""
    name, _, k_text = metric.partition("@")
    k = int(k_text)
    users = split.test_users()
    if len(users) == 0:
        raise ValueError(f"the {split.protocol} split has no test users (too few interactions per user?)")
    truth, exclude = split.test_matrix(), split.train.matrix(binary=True)
    n_relevant = np.diff(truth.indptr)[users]
    values = []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        hits = hit_matrix(recommend(model, chunk, k, exclude), chunk, truth)
        values.append(METRICS[name](hits, n_relevant[start : start + batch], k) * len(chunk))
    return float(np.sum(values) / len(users))


def tune(
    spec: ModelSpec,
    train: Interactions,
    protocol: SplitProtocol,
    ctx: BuildContext,
    config: TuningConfig = TuningConfig(),
) -> TuningResult:
    """Best parameters of ``spec`` on ``protocol.validation(train)``; see the module docstring."""
    start = time.perf_counter()
    search_space = spec.search_space
    if search_space is None or config.trials == 0:
        return TuningResult({}, None, 0, time.perf_counter() - start)
    validation = protocol.validation(train)
    defaults = _defaults(spec, ctx)

    def objective(trial: optuna.Trial) -> float:
        params = search_space(trial)
        model = spec.build(params, ctx).fit(validation.train, item_features=ctx.item_features())
        return accuracy(model, validation, config.metric)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    if defaults:
        study.enqueue_trial(defaults, skip_if_exists=True)
    study.optimize(objective, n_trials=config.trials, timeout=config.timeout_s, catch=(np.linalg.LinAlgError,))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError(f"tuning {spec.name}: no trial completed")
    history = [{"params": t.params, "value": t.value} for t in done]
    log.info("tuned %s: %s -> %s=%.4f (%d trials)", spec.name, study.best_params, config.metric, study.best_value, len(done))
    return TuningResult(dict(study.best_params), float(study.best_value), len(done), time.perf_counter() - start, history)


def _defaults(spec: ModelSpec, ctx: BuildContext) -> dict[str, Any]:
    """The model's default values of the parameters its search space names."""
    recorder = _RecordingTrial()
    if spec.search_space is not None:
        spec.search_space(recorder)
    model = spec.build({}, ctx)
    current = model.get_params() if hasattr(model, "get_params") else {}
    return {name: current[name] for name in recorder.names if name in current}


class _RecordingTrial:
    """Records the parameter names a search space asks for (answers None)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __getattr__(self, attr: str) -> Any:
        def suggest(name: str, *args: Any, **kwargs: Any) -> None:
            self.names.append(name)

        return suggest
