"""The offline evaluation harness: tune on validation, fit on train, evaluate on test, log to MLflow.

``evaluate(model, split, ...)`` -> (metrics dict, top-``budget`` lists) for a fitted model.
``run(names, data, protocol, ...)`` -> ``Report``: for each named model of the registry, tune
(``tuning.tune``, validation only), refit the best parameters on the split's train part, evaluate
on its test part and log one MLflow run (params, data fingerprint, metrics, seconds) nested under a
parent run for the whole evaluation. The candidate stage is measured too: each model's recall at
``budget`` and the recall of the round-robin union of all models but the final one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pathways.models_config import ModelsConfig
from training.data import Dataset
from training.evaluation import metrics as M
from training.evaluation.report import ModelResult, Report
from training.evaluation.splits import Split, SplitProtocol
from training.evaluation.tuning import TuningConfig, tune
from training.recommender import Recommender, recommend, union_candidates
from training.registry import FINAL_MODEL, BuildContext, ModelSpec, model_specs

log = logging.getLogger(__name__)
DEFAULT_KS = (10, 20, 50)
DEFAULT_BUDGET = 500


def evaluate(
    model: Recommender,
    split: Split,
    ks: Sequence[int] = DEFAULT_KS,
    item_genres: list[list[str]] | None = None,
    budget: int = DEFAULT_BUDGET,
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of a fitted ``model`` on ``split.test`` and its top-``budget`` lists (n_test_users, budget).

    Ranking is over the whole catalog with each user's train items excluded. Keys: ``ndcg@K``,
    ``recall@K``, ``map@K``, ``coverage@K``, ``novelty@K``, ``popularity@K`` (mean popularity
    percentile), ``gini@K``, ``diversity@K`` (genre intra-list diversity, when genres are given)
    for each K, and ``recall@budget``.
    """
    users = split.test_users()
    if len(users) == 0:
        raise ValueError(f"the {split.protocol} split has no test users")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    train = split.train.matrix(binary=True)
    truth = split.test_matrix()
    n_items = train.shape[1]
    depth = min(max(max(ks), budget), n_items)
    batch = max(1, min(1024, (1 << 26) // max(n_items, 1)))
    topk = np.concatenate([recommend(model, users[s : s + batch], depth, train) for s in range(0, len(users), batch)])
    hits = M.hit_matrix(topk, users, truth)
    n_relevant = np.diff(truth.indptr)[users]
    popularity = M.item_popularity(train)
    genres = M.genre_matrix(item_genres) if item_genres else None
    out: dict[str, float] = {}
    for k in ks:
        out[f"ndcg@{k}"] = M.ndcg_at_k(hits, n_relevant, k)
        out[f"recall@{k}"] = M.recall_at_k(hits, n_relevant, k)
        out[f"map@{k}"] = M.map_at_k(hits, n_relevant, k)
        out[f"coverage@{k}"] = M.coverage_at_k(topk, n_items, k)
        out[f"novelty@{k}"] = M.novelty_at_k(topk, popularity, split.train.n_users, k)
        out[f"popularity@{k}"] = M.mean_popularity_percentile(topk, popularity, k)
        out[f"gini@{k}"] = M.gini_at_k(topk, n_items, k)
        if genres is not None:
            out[f"diversity@{k}"] = M.intra_list_diversity(topk, genres, k)
    if budget > 0:
        out[f"recall@{budget}"] = M.recall_at_k(hits, n_relevant, budget)
    return out, topk[:, :budget]


def run(
    names: Sequence[str],
    data: Dataset,
    protocol: SplitProtocol,
    tuning: TuningConfig = TuningConfig(),
    ks: Sequence[int] = DEFAULT_KS,
    budget: int = DEFAULT_BUDGET,
    mlflow: bool = True,
    seed: int = 0,
    models: ModelsConfig | None = None,
) -> Report:
    """Tune, fit and evaluate each named model on one split of ``data``; see the module docstring.

    Models start from their section of ``models`` (default: ``ModelsConfig()``) and ``seed``.
    """
    specs = model_specs()
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown models {unknown}; available: {sorted(specs)}")
    split = protocol.split(data.interactions)
    ctx = BuildContext(models=models or ModelsConfig(), seed=seed, item_genres=data.item_genres)
    report = Report.start(protocol.name, data, split, tuning, FINAL_MODEL if FINAL_MODEL in names else None)
    tracker = _Tracker(mlflow, report)
    try:
        lists: dict[str, np.ndarray] = {}
        for name in names:
            report.results[name], lists[name] = _tune_fit_evaluate(specs[name], split, protocol, ctx, tuning, ks, budget)
            tracker.log_model(report.results[name])
        members = [n for n in names if n != report.final]
        if budget > 0 and members:
            report.candidates = _candidate_stage(report, members, lists, split, budget)
        tracker.finish()
    except BaseException:
        tracker.abort()
        raise
    return report


def _tune_fit_evaluate(
    spec: ModelSpec, split: Split, protocol: SplitProtocol, ctx: BuildContext, tuning: TuningConfig,
    ks: Sequence[int], budget: int,
) -> tuple[ModelResult, np.ndarray]:  # fmt: skip
    """Tune on validation, refit on the full train split, evaluate on test (timed)."""
    tuned = tune(spec, split.train, protocol, ctx, tuning)
    model = spec.build(tuned.params, ctx)
    start = time.perf_counter()
    model.fit(split.train, item_features=ctx.item_features())
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics, lists = evaluate(model, split, ks, ctx.item_genres, budget)
    eval_s = time.perf_counter() - start
    params = model.get_params() if hasattr(model, "get_params") else dict(tuned.params)
    log.info("%s: %s train %.1fs tune %.1fs", spec.name, {k: round(v, 4) for k, v in metrics.items() if k.startswith("ndcg")}, train_s, tuned.seconds)
    result = ModelResult(spec.name, spec.kind, params, metrics, train_s, eval_s, tuned.seconds, tuned.n_trials, tuned.value)
    return result, lists


def _candidate_stage(
    report: Report, members: list[str], lists: dict[str, np.ndarray], split: Split, budget: int
) -> dict[str, Any]:
    """Recall at ``budget`` of each generator and of their round-robin union (users in chunks)."""
    n_items, chunk = split.train.n_items, 1024
    union = np.concatenate([
        union_candidates([lists[n][s : s + chunk] for n in members], n_items, budget, tie_break="list")
        for s in range(0, len(next(iter(lists.values()))), chunk)
    ])  # fmt: skip
    users, truth = split.test_users(), split.test_matrix()
    return {
        "budget": budget,
        "members": members,
        "recall": {n: report.results[n].metrics[f"recall@{budget}"] for n in members},
        "union_recall": M.recall_at_k(M.hit_matrix(union, users, truth), np.diff(truth.indptr)[users], budget),
    }


class _Tracker:
    """MLflow logging for one evaluation: a parent run with one nested run per model (no-op if off)."""

    def __init__(self, enabled: bool, report: Report) -> None:
        self.enabled = enabled
        self.report = report
        if enabled:
            import mlflow

            self.parent = mlflow.start_run(run_name=f"evaluate-{report.protocol}")
            mlflow.set_tags(report.tags())
            mlflow.log_params({"protocol": report.protocol, **report.tuning_params()})

    def log_model(self, result: ModelResult) -> None:
        if not self.enabled:
            return
        import mlflow

        from pathways import tracking

        with mlflow.start_run(run_name=result.name, nested=True) as child:
            mlflow.set_tags({**self.report.tags(), "model": result.name, "kind": result.kind})
            tracking.log_params_flat(result.params, prefix="model.")
            mlflow.log_params({"protocol": self.report.protocol, **self.report.tuning_params()})
            mlflow.log_metrics({_mlflow_key(k): v for k, v in result.metrics.items()})
            mlflow.log_metrics(result.timings())
            result.run_id = child.info.run_id

    def abort(self) -> None:
        if self.enabled:
            import mlflow

            mlflow.end_run(status="FAILED")

    def finish(self) -> None:
        if not self.enabled:
            return
        import mlflow

        if self.report.candidates:
            mlflow.log_metric("candidates.union_recall", self.report.candidates["union_recall"])
        mlflow.log_dict(self.report.to_json(), "report.json")
        mlflow.log_text(self.report.table(), "report.txt")
        self.report.run_id = self.parent.info.run_id
        mlflow.end_run()


def _mlflow_key(key: str) -> str:
    return key.replace("@", "_at_")  # MLflow metric names may not contain '@'


