"""MLflow in one place: tracking URI, runs, model registration and the champion/challenger aliases.

Serving and the nightly job load ``models:/<name>@champion``. Models are logged with explicit
``pip_requirements`` (MLflow otherwise re-imports the project in a subprocess, ~10 s).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
PIP_REQUIREMENTS = ["torch==2.13.0", "numpy==2.4.6", "implicit==0.7.3", "faiss-cpu==1.15.1"]

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", module="mlflow")


def configure(tracking_uri: str, experiment: str = "pathways") -> None:
    """Point MLflow at ``tracking_uri`` (and the same registry) and select the experiment.

    With a SQLite tracking store, a new experiment keeps its artifacts beside the database
    (``<db dir>/mlartifacts/<experiment>``), not under the working directory, so everything a
    data dir needs stays in it."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        if mlflow.get_experiment_by_name(experiment) is None:
            location = (db.parent / "mlartifacts" / experiment).resolve().as_uri()
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # another process created it first
                mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)


def register(model_uri: str, name: str, alias: str | None = CHAMPION, tags: dict[str, str] | None = None) -> str:
    """Register ``model_uri`` as a new version of ``name``; point ``alias`` at it. Returns the version."""
    version = mlflow.register_model(model_uri, name, tags=tags)
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


def alias_version(name: str, alias: str = CHAMPION) -> str | None:
    """The version behind ``name@alias``, or None when the model or alias does not exist."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def alias_uri(name: str, alias: str = CHAMPION) -> str:
    return f"models:/{name}@{alias}"


def log_params_flat(params: dict[str, Any], prefix: str = "") -> None:
    flat = {f"{prefix}{k}": (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()}
    if flat:
        mlflow.log_params(flat)
