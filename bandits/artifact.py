"""A trained artwork policy <-> its neutral artifact (``pathways/artifacts/artwork.py``), and its MLflow form.

The artifact holds plain data (kind, config, version, learned arrays, the arm layout's arrays);
this module turns it into a policy object (``bandits/policies.py``) and back, gives the MLflow
pyfunc its ``predict`` (each row's arm probabilities) and loads a registered policy through the
one registry loader (``pathways/artifacts/registry.py``). On disk::

    to_artifact(policy, version).save(path)
    policy, version = from_artifact(ArtworkPolicyArtifact.load(path))
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from bandits.features import ArmFeaturizer
from bandits.policies import Policy, make_policy
from pathways.artifacts.artwork import ArtworkPolicyArtifact

if TYPE_CHECKING:
    import pandas as pd

    from pathways.artifacts.registry import Predict


def to_artifact(policy: Policy, version: str) -> ArtworkPolicyArtifact:
    """The policy's saveable form; it must carry the featurizer it was trained with."""
    fz = policy.featurizer
    if fz is None:
        raise ValueError(f"{policy.kind}: a saved policy needs its featurizer")
    arrays = {f.name: np.asarray(getattr(fz, f.name)) for f in fields(fz)}
    arrays["context_names"] = np.array(fz.context_names, dtype=str)
    return ArtworkPolicyArtifact(policy.kind, asdict(policy.config), version, arrays, policy.get_state())


def from_artifact(artifact: ArtworkPolicyArtifact) -> tuple[Policy, str]:
    """The policy (with its featurizer and learned state) and its version string."""
    arrays = dict(artifact.featurizer)
    context_names = tuple(str(n) for n in arrays.pop("context_names"))
    policy = make_policy(artifact.kind, ArmFeaturizer(context_names, **arrays), **artifact.config)
    if artifact.state:
        policy.set_state(dict(artifact.state))
    return policy, artifact.version


def policy_probabilities(artifact: ArtworkPolicyArtifact) -> Predict:
    """The MLflow ``predict``: a DataFrame with ``title_id`` and the context columns
    (``featurizer.context_names``) -> each row's arm probabilities as a list."""
    policy, _ = from_artifact(artifact)

    def predict(model_input: pd.DataFrame, params: dict[str, Any] | None) -> list[list[float]]:
        fz = policy.featurizer
        assert fz is not None  # from_artifact always sets it
        titles = model_input["title_id"].to_numpy(np.int64)
        feats = fz.transform(model_input[list(fz.context_names)].to_numpy(np.float32), titles)
        return policy.probabilities(feats, fz.n_arms(titles)).tolist()

    return predict


def download_policy(model_uri: str) -> tuple[Policy, str]:
    """Load ``models:/artwork_policy@champion`` (or any logged policy URI)."""
    from pathways.artifacts.registry import load_registered

    return from_artifact(load_registered(model_uri, "artwork_policy"))
