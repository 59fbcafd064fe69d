"""``pathways evaluate``: the offline evaluation harness on a world or MovieLens folder.

    pathways evaluate --data ../shared/data/ml-latest-small --protocol leave-last-5 \
        --models popularity,item_knn,ease,als,bpr --trials 20 --json var/eval.json

Prints one table row per model and logs an MLflow run per model (``--no-mlflow`` to skip).
Heavy imports happen inside the handler so ``pathways --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PROTOCOL_HELP = "leave-last-5 (any leave-last-<n>) or temporal"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the pathways command line."""
    ev = subparsers.add_parser("evaluate", help="offline evaluation of baselines and models (tuned on validation)")
    ev.add_argument("--data", type=Path, required=True, help="a world folder or a MovieLens folder (any layout)")
    ev.add_argument("--protocol", default="leave-last-5", help=PROTOCOL_HELP)
    ev.add_argument("--quantile", type=float, default=0.9, help="temporal: cut at this quantile of timestamps")
    ev.add_argument("--models", default="baselines", help="comma-separated names, 'baselines' or 'all'")
    ev.add_argument("--trials", type=int, default=20, help="Optuna trials per tuned model (0: defaults)")
    ev.add_argument("--timeout", type=float, default=150.0, help="tuning time budget per model, seconds")
    ev.add_argument("--seed", type=int, default=0, help="seed of samplers and models")
    ev.add_argument("--ks", default="10,20,50", help="cut-offs K of the metrics")
    ev.add_argument("--budget", type=int, default=500, help="candidate budget for generator recall (0: off)")
    ev.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    ev.add_argument("--mlflow-uri", default=None, help="tracking URI (default: the Pathways config's)")
    ev.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    ev.set_defaults(handler=run_evaluate)


def parse_models(text: str, available: dict[str, str]) -> list[str]:
    """``baselines``, ``all`` or a comma-separated list of registered names (ValueError otherwise)."""
    if text == "all":
        return list(available)
    if text == "baselines":
        return [n for n, kind in available.items() if kind == "baseline"]
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("--models is empty")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; available: {', '.join(available)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--models lists a model twice: {names}")
    return names


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise ValueError(f"--ks must be comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ValueError(f"--ks must be positive, got {text!r}")
    return ks


def check_args(args: argparse.Namespace) -> None:
    """Clear errors for bad flags, before any data is read."""
    if not args.data.is_dir():
        raise FileNotFoundError(f"--data folder not found: {args.data}")
    if args.trials < 0:
        raise ValueError(f"--trials must be >= 0, got {args.trials}")
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0, got {args.timeout}")
    if args.budget < 0:
        raise ValueError(f"--budget must be >= 0, got {args.budget}")
    if args.json is not None and args.json.is_dir():
        raise ValueError(f"--json {args.json} is a folder; give a file path")


def run_evaluate(args: argparse.Namespace) -> int:
    from training.evaluation import TuningConfig, protocol_from_name, run
    from training.registry import kinds

    check_args(args)
    protocol = protocol_from_name(args.protocol, quantile=args.quantile)
    names = parse_models(args.models, kinds())
    ks = parse_ks(args.ks)
    tuning = TuningConfig(trials=args.trials, timeout_s=args.timeout, seed=args.seed)
    from training.data import load_dataset

    data = load_dataset(args.data)
    if not args.no_mlflow:
        configure_mlflow(args.mlflow_uri)
    report = run(names, data, protocol, tuning, ks=ks, budget=args.budget, mlflow=not args.no_mlflow, seed=args.seed)
    print(report.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2))
        print(f"wrote {args.json}")
    return 0


def configure_mlflow(uri: str | None, experiment: str = "pathways-evaluation") -> str:
    """Point MLflow at ``uri`` (default: the Pathways config's tracking URI); returns the URI."""
    from pathways import tracking
    from pathways.config import load_config

    uri = uri or load_config().mlflow_uri
    tracking.configure(uri, experiment)
    return uri
