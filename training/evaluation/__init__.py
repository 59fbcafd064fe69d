"""Offline evaluation: protocols (``splits``), metrics, Optuna tuning on validation, the harness.

    from training.data import load_dataset
    from training.evaluation import LeaveLastN, run
    report = run(["pop", "ease"], load_dataset("ml-latest-small"), LeaveLastN(5))
    print(report.table())
"""

from training.evaluation.harness import evaluate, run
from training.evaluation.registry import EvalContext, ModelSpec, final_model_name, model_specs, register
from training.evaluation.report import ModelResult, Report
from training.evaluation.splits import LeaveLastN, Split, Temporal, protocol_from_name
from training.evaluation.tuning import TuningConfig, TuningResult, tune

__all__ = [
    "EvalContext", "LeaveLastN", "ModelResult", "ModelSpec", "Report", "Split", "Temporal", "TuningConfig",
    "TuningResult", "evaluate", "final_model_name", "protocol_from_name", "model_specs", "register", "run", "tune",
]  # fmt: skip
