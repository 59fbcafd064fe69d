"""The ``pathways`` command line: one entry point, one sub-command per concern.

Each package contributes its sub-commands through a ``register(subparsers)`` function in its
``cli`` module; heavy imports happen inside the handlers so ``pathways --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from pathways.config import ConfigError

# Modules whose ``register(subparsers)`` adds sub-commands, in help order.
COMMAND_MODULES = (
    "world.cli",
    "features.cli",
    "pipelines.cli",
    "serving.cli",
    "training.cli",
    "bandits.cli",
    "experiments.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pathways",
        description="Pathways: personalized home pages from event logs (see README.md).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that package has no CLI (yet): nothing to register
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("feast", "alembic", "urllib3", "ray", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # pyfunc pickling advice on every log_model
    try:
        handler = getattr(args, "handler", None) or getattr(args, "func", None)
        if handler is None:
            parser.parse_args([*(argv or sys.argv[1:]), "--help"])
            return 2  # --help exits before this
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"pathways: configuration error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"pathways: error: {exc}", file=sys.stderr)
        return 2


def entry() -> None:
    """The console script: ``main``, then exit without interpreter teardown, where duckdb's
    nanobind bindings (loaded by Feast) print pages of "leaked instance" reports."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
