"""The one way to log and load registered models: MLflow pyfunc wrappers and ``load_registered``.

Every artifact that crosses stages through the MLflow registry is logged as a pyfunc model whose
MLflow artifacts hold the saved artifact folder, and read back by downloading that folder:

| kind | artifact | marker file | MLflow artifact key | pyfunc ``predict`` |
| --- | --- | --- | --- | --- |
| ``factors`` | ``FactorArtifacts`` | ``als_factors.npz`` | ``als`` | DataFrame ``profile_id`` (+ param ``k``) -> top-k title ids |
| ``ranker`` | ``RankerArtifact`` | ``ranker.json`` | ``ranker`` | DataFrame of the feature columns -> P(play) |
| ``artwork_policy`` | ``ArtworkPolicyArtifact`` | ``policy.json`` | ``policy`` | given by ``bandits`` (arm probabilities) |

MLflow (and torch, for the ranker) is imported only when a function here runs.
"""

from __future__ import annotations

import functools
import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pathways.artifacts import artwork, factors

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models.model import ModelInfo
    from mlflow.models.signature import ModelSignature

Kind = Literal["factors", "ranker", "artwork_policy"]
Predict = Callable[["pd.DataFrame", "dict[str, Any] | None"], Any]
Predictor = Callable[[Any], Predict]  # loaded artifact -> its predict function


@dataclass(frozen=True)
class _Spec:
    module: str  # where the artifact class lives (imported lazily: the ranker needs torch)
    cls: str
    marker: str  # a file every saved artifact of this kind holds
    key: str  # the MLflow artifact key, also the saved folder's name


SPECS: dict[str, _Spec] = {
    "factors": _Spec("pathways.artifacts.factors", "FactorArtifacts", factors.FACTORS, "als"),
    "ranker": _Spec("pathways.artifacts.ranker", "RankerArtifact", "ranker.json", "ranker"),  # ranker.META (torch)
    "artwork_policy": _Spec("pathways.artifacts.artwork", "ArtworkPolicyArtifact", artwork.META, "policy"),
}


def _spec(kind: str) -> _Spec:
    if kind not in SPECS:
        raise ValueError(f"kind: unknown artifact kind {kind!r}; known: {sorted(SPECS)}")
    return SPECS[kind]


def artifact_class(kind: Kind) -> Any:
    """The artifact type of ``kind`` (its ``load(path)`` reads a saved folder)."""
    spec = _spec(kind)
    return getattr(importlib.import_module(spec.module), spec.cls)


def load_registered(model_uri: str, kind: Kind) -> Any:
    """Download ``model_uri`` (``models:/ranker@champion``, ``runs:/...``, a local path) and load the
    ``kind`` artifact inside it; FileNotFoundError when it holds none."""
    import mlflow.artifacts

    spec = _spec(kind)
    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    found = next(local.rglob(spec.marker), None)
    if found is None:
        raise FileNotFoundError(f"{model_uri} holds no {kind} artifact ({spec.marker})")
    return artifact_class(kind).load(found.parent)


def factor_top_k(artifact: factors.FactorArtifacts) -> Predict:
    """Each ``profile_id``'s top ``k`` (param, default 10) title ids by inner product; [] when unknown."""
    from pathways.artifacts.factor_index import FactorIndex

    index = FactorIndex(artifact.item_factors)

    def predict(model_input: pd.DataFrame, params: dict[str, Any] | None) -> list[list[int]]:
        k = int((params or {}).get("k", 10))
        rows = [artifact.profile_row.get(int(p), -1) for p in model_input["profile_id"]]
        known = [r for r in rows if r >= 0]
        found = iter(index.search(artifact.user_factors[known], k)[1]) if known else iter(())
        return [artifact.title_ids[next(found)].tolist() if r >= 0 else [] for r in rows]

    return predict


def ranker_probabilities(artifact: Any) -> Predict:
    """P(play) for each row of a DataFrame holding the ranker's feature columns."""

    def predict(model_input: pd.DataFrame, params: dict[str, Any] | None) -> Any:
        return artifact.predict(model_input[artifact.feature_names].to_numpy())

    return predict


DEFAULT_PREDICTORS: dict[str, Predictor] = {"factors": factor_top_k, "ranker": ranker_probabilities}


def factor_signature() -> ModelSignature:
    """The factors pyfunc's contract: a ``profile_id`` column; param ``k`` (default 10) title ids per profile."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("long", "profile_id")]), params=ParamSchema([ParamSpec("k", "long", 10)]))


DEFAULT_SIGNATURES: dict[str, Callable[[], ModelSignature]] = {"factors": factor_signature}


@functools.cache
def _pyfunc_class() -> type:  # built lazily so that importing this module does not import mlflow
    import mlflow.pyfunc

    class ArtifactPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
        """Loads the ``kind`` artifact from the model's MLflow artifacts; ``predict`` is ``predictor``'s."""

        def __init__(self, kind: str, predictor: Predictor) -> None:
            self.kind = kind
            self.predictor = predictor

        def load_context(self, context: Any) -> None:
            artifact = artifact_class(self.kind).load(Path(context.artifacts[_spec(self.kind).key]))  # type: ignore[arg-type]
            self._predict = self.predictor(artifact)

        # No type hints: MLflow would turn them into input validation and an inferred signature.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # noqa: ANN001
            return self._predict(model_input, params)

    return ArtifactPyfunc


def pyfunc_model(kind: Kind, predictor: Predictor | None = None) -> Any:
    """An MLflow ``PythonModel`` serving the ``kind`` artifact; ``predictor`` defaults per kind."""
    _spec(kind)
    if predictor is None:
        if kind not in DEFAULT_PREDICTORS:
            raise ValueError(f"kind {kind!r} has no default predictor: pass one")
        predictor = DEFAULT_PREDICTORS[kind]
    return _pyfunc_class()(kind, predictor)


def log_artifact_model(
    kind: Kind,
    artifact: Any,
    name: str,
    pip_requirements: list[str],
    *,
    predictor: Predictor | None = None,
    signature: ModelSignature | None = None,
) -> ModelInfo:
    """Save ``artifact`` and log it as the pyfunc model ``name`` in the active MLflow run
    (``signature`` defaults per kind: ``factor_signature`` for factors, none otherwise)."""
    import mlflow.pyfunc

    model = pyfunc_model(kind, predictor)
    if signature is None and kind in DEFAULT_SIGNATURES:
        signature = DEFAULT_SIGNATURES[kind]()
    with tempfile.TemporaryDirectory() as tmp:
        key = _spec(kind).key
        path = artifact.save(Path(tmp) / key)
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=name, python_model=model, artifacts={key: str(path)}, pip_requirements=pip_requirements,
            signature=signature,
        )
    return info
