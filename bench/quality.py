"""Recommendation quality: every tuned baseline and every registered model, in one run, on one protocol.

Usage:
    python bench/quality.py --data ../shared/data/ml-latest-small [--json PATH] [--protocol leave-last-5]
        [--trials N] [--timeout S] [--repeats R] [--models LIST] [--no-mlflow]

Baselines (popularity, item_knn, ease, als, bpr) are tuned with Optuna on a validation split carved
from train; the other models of ``training.registry`` run with their ``models`` settings. The
final model (``training.registry.FINAL_MODEL``: candidates -> ranker, what Pathways serves as its
top row) is compared with the best baseline on each metric. With ``--repeats R`` the whole run is
repeated with seeds 0..R-1 and medians are reported. ``train_seconds`` is tuning plus the final
fit (what it costs to produce the model); ``fit_seconds`` and ``tune_seconds`` are given apart.
When no final model is registered, ``final`` is null and ``ratios`` are omitted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "1073741824")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "4294967296")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from training.data import load_dataset  # noqa: E402
from training.evaluation import Report, TuningConfig, protocol_from_name, run  # noqa: E402
from training.registry import FINAL_MODEL, kinds  # noqa: E402

TRAIN_BUDGET_S = 20 * 60
METRICS = ("ndcg@20", "recall@20", "map@20", "coverage@20", "novelty@20", "diversity@20")


def summarize(reports: list[Report], wall_s: float) -> dict:
    """The bench JSON: per model medians over repeats, the final model, best baselines and ratios."""
    first = reports[0]
    models: dict[str, dict] = {}
    for name, result in first.results.items():
        runs = [r.results[name] for r in reports]
        entry = {m: float(np.median([x.metrics[m] for x in runs])) for m in METRICS if m in result.metrics}
        entry["fit_seconds"] = float(np.median([x.train_seconds for x in runs]))
        entry["tune_seconds"] = float(np.median([x.tune_seconds for x in runs]))
        entry["train_seconds"] = entry["fit_seconds"] + entry["tune_seconds"]
        entry["n_trials"] = int(np.median([x.n_trials for x in runs]))
        entry["kind"] = result.kind
        entry["params"] = result.params
        models[name] = entry
    baselines = {n: e for n, e in models.items() if e["kind"] == "baseline"}
    out: dict = {
        "protocol": first.protocol,
        "data": first.data,
        "repeats": len(reports),
        "models": models,
        "final": first.final,
        "best_baseline": max(baselines, key=lambda n: baselines[n]["ndcg@20"]) if baselines else None,
        "train_seconds_total": float(sum(e["train_seconds"] for e in models.values())),
        "train_budget_seconds": TRAIN_BUDGET_S,
        "wall_seconds": wall_s,
        "candidates": first.candidates,
    }
    if first.final and baselines:
        best = {m: max(baselines, key=lambda n: baselines[n][m]) for m in ("ndcg@20", "recall@20")}
        out["best_baseline_by_metric"] = best
        out["ratios"] = {m: models[first.final][m] / baselines[b][m] for m, b in best.items()}
    return out


def table(summary: dict) -> str:
    head = ["model", "NDCG@20", "Recall@20", "MAP@20", "coverage@20", "train_s", "(tune_s)"]
    rows = [
        [name, f"{e['ndcg@20']:.4f}", f"{e['recall@20']:.4f}", f"{e['map@20']:.4f}", f"{e['coverage@20']:.4f}",
         f"{e['train_seconds']:.1f}", f"{e['tune_seconds']:.1f}"]
        for name, e in summary["models"].items()
    ]  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [
        f"{summary['protocol']} on {summary['data']['path']} ({summary['data']['n_users']} users, "
        f"{summary['data']['n_items']} items); median of {summary['repeats']} run(s)",
        "  ".join(h.ljust(w) for h, w in zip(head, widths)),
        *("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows),
        f"best baseline: {summary['best_baseline']}; final model: {summary['final']}",
    ]
    if "ratios" in summary:
        lines.append(
            "final / best baseline: "
            + ", ".join(f"{m} {v:.3f}x (vs {summary['best_baseline_by_metric'][m]})" for m, v in summary["ratios"].items())
        )
    lines.append(
        f"training in all: {summary['train_seconds_total']:.0f} s (budget {TRAIN_BUDGET_S} s); "
        f"wall {summary['wall_seconds']:.0f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--protocol", default="leave-last-5")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=90.0, help="tuning seconds per baseline")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--models", default="all", help="comma-separated names or 'all'")
    parser.add_argument("--mlflow-uri", default=None)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if not args.data.is_dir():
        parser.error(f"--data folder not found: {args.data}")
    from training.cli import configure_mlflow, parse_models

    names = parse_models(args.models, kinds())
    if FINAL_MODEL in names:  # the final model runs last, after every baseline
        names = [n for n in names if n != FINAL_MODEL] + [FINAL_MODEL]
    protocol = protocol_from_name(args.protocol)
    data = load_dataset(args.data)
    if not args.no_mlflow:
        configure_mlflow(args.mlflow_uri, experiment="pathways-bench-quality")
    start = time.perf_counter()
    reports = [
        run(names, data, protocol, TuningConfig(trials=args.trials, timeout_s=args.timeout, seed=seed),
            mlflow=not args.no_mlflow, seed=seed)
        for seed in range(args.repeats)
    ]  # fmt: skip
    summary = summarize(reports, time.perf_counter() - start)
    print(table(summary))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
