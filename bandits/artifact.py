"""Saving and loading a trained artwork policy (config, learned arrays, featurizer) and its MLflow form.

On disk a policy is a folder: ``policy.json`` (kind, config, version), ``state.npz`` (learned
arrays) and ``featurizer.npz`` (the catalog's arm layout it was trained with).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from bandits.features import ArmFeaturizer
from bandits.policies import Policy, make_policy

META, STATE, FEATURIZER = "policy.json", "state.npz", "featurizer.npz"


def save_policy(policy: Policy, path: str | Path, version: str) -> Path:
    """Write ``policy`` to the folder ``path``; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if policy.featurizer is None:
        raise ValueError(f"{policy.kind}: a saved policy needs its featurizer")
    (path / META).write_text(json.dumps({"kind": policy.kind, "config": asdict(policy.config), "version": version}))
    np.savez(path / STATE, **policy.get_state())
    policy.featurizer.save(path / FEATURIZER)
    return path


def load_policy(path: str | Path) -> tuple[Policy, str]:
    """The policy saved at ``path`` and its version string."""
    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileNotFoundError(f"no artwork policy at {path}: {exc}") from None
    policy = make_policy(meta["kind"], ArmFeaturizer.load(path / FEATURIZER), **meta["config"])
    with np.load(path / STATE, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    if state:
        policy.set_state(state)
    return policy, str(meta["version"])


def pyfunc_class():  # built lazily so importing bandits does not import mlflow
    import mlflow.pyfunc

    class ArtworkPolicyPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow wrapper. ``predict`` takes a DataFrame with ``title_id`` and the context columns
        (``featurizer.context_names``) and returns each row's arm probabilities as a list."""

        def load_context(self, context) -> None:  # noqa: ANN001 - MLflow's signature
            self.policy, self.version = load_policy(Path(context.artifacts["policy"]))

        def predict(self, context, model_input: pd.DataFrame, params=None) -> list[list[float]]:  # noqa: ANN001
            fz = self.policy.featurizer
            titles = model_input["title_id"].to_numpy(np.int64)
            feats = fz.transform(model_input[list(fz.context_names)].to_numpy(np.float32), titles)
            return self.policy.probabilities(feats, fz.n_arms(titles)).tolist()

    return ArtworkPolicyPyfunc


def download_policy(model_uri: str) -> tuple[Policy, str]:
    """Load ``models:/artwork_policy@champion`` (or any logged policy URI)."""
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    found = next(local.rglob(META), None)
    if found is None:
        raise FileNotFoundError(f"{model_uri} holds no artwork policy")
    return load_policy(found.parent)
