"""Offline evaluation: protocols (``splits``), metrics, Optuna tuning on validation, the harness.

    from training.data import load_dataset
    from training.evaluation import LeaveLastN, run
    report = run(["popularity", "ease"], load_dataset("ml-latest-small"), LeaveLastN(5))
    print(report.table())

The harness and tuning are imported on first use: models import ``splits`` and ``metrics`` from
here, and the harness imports the models (through ``training.registry``).
"""

from importlib import import_module
from typing import Any

from training.evaluation.splits import LeaveLastN, Split, Temporal, leave_last_k, protocol_from_name

_LAZY = {
    "evaluate": "harness", "run": "harness", "ModelResult": "report", "Report": "report",
    "TuningConfig": "tuning", "TuningResult": "tuning", "tune": "tuning",
}  # fmt: skip

__all__ = ["LeaveLastN", "Split", "Temporal", "leave_last_k", "protocol_from_name", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"training.evaluation.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'training.evaluation' has no attribute {name!r}")
