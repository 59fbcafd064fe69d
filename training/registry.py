"""The one registry of models: name -> how to build it from the config, what the harness tunes, its kind.

Names: ``popularity``, ``item_knn``, ``ease``, ``als``, ``bpr`` (baselines: tuned with Optuna
by the harness, starting from their ``models.<name>`` section), ``sasrec``, ``two_tower``,
``item_knn_recent`` and ``pathways_final`` (models: they tune themselves on validation carved from
the train data they are given). Each name's settings are the section ``models.<name>`` of
``PathwaysConfig``. The evaluation harness, ``bench/quality.py``, PathwaysFinal's generators, the
nightly job's retrieval models and ``pathways evaluate`` all build models here. Classes are
imported on first use, so listing names stays cheap. ``register(spec)`` adds a model at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Literal

import numpy as np

from pathways.models_config import ModelsConfig
from training.recommender import Recommender

FINAL_MODEL = "pathways_final"


@dataclass(frozen=True)
class BuildContext:
    """What a model is built with besides its parameters: the settings, the seed, item genres."""

    models: ModelsConfig = ModelsConfig()
    seed: int = 0
    item_genres: list[list[str]] = field(default_factory=list)  # dense item -> genres

    def item_features(self) -> np.ndarray | None:
        """(n_items, n_genres) float32 multi-hot of ``item_genres``, or None without genres."""
        if not self.item_genres:
            return None
        from training.evaluation.metrics import genre_matrix

        features = genre_matrix(self.item_genres)
        return features if features.size and features.shape[1] > 0 else None


@dataclass(frozen=True)
class ModelSpec:
    """``build(params, ctx)`` returns an unfitted model; ``search_space(trial)`` its tunables (or None)."""

    name: str
    build: Callable[[dict[str, Any], BuildContext], Recommender]
    search_space: Callable[[Any], dict[str, Any]] | None = None
    kind: Literal["baseline", "model"] = "baseline"


def model_class(target: str) -> type:
    """The class behind ``"module:Class"``."""
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def _spec(
    name: str, target: str, kind: Literal["baseline", "model"], space: Callable[[Any], dict[str, Any]] | None = None
) -> ModelSpec:
    def build(params: dict[str, Any], ctx: BuildContext) -> Recommender:
        return model_class(target)(getattr(ctx.models, name), seed=ctx.seed, name=name, **params)

    return ModelSpec(name, build, space, kind)


# Optuna search spaces of the tuned baselines: setting name -> range (the trial starts at models.<name>).
def _item_knn_space(trial: Any) -> dict[str, Any]:
    return {"k": trial.suggest_int("k", 10, 1000, log=True), "shrink": trial.suggest_float("shrink", 0.0, 200.0)}


def _ease_space(trial: Any) -> dict[str, Any]:
    return {"l2": trial.suggest_float("l2", 1.0, 1e4, log=True)}


def _als_space(trial: Any) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 192, log=True),
        "regularization": trial.suggest_float("regularization", 1e-3, 10.0, log=True),
        "alpha": trial.suggest_float("alpha", 0.5, 100.0, log=True),
        "iterations": trial.suggest_int("iterations", 5, 25),
        "weighting": trial.suggest_categorical("weighting", ["none", "bm25", "tfidf"]),
    }


def _bpr_space(trial: Any) -> dict[str, Any]:
    return {
        "factors": trial.suggest_int("factors", 16, 192, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.2, log=True),
        "regularization": trial.suggest_float("regularization", 1e-5, 0.1, log=True),
        "iterations": trial.suggest_int("iterations", 20, 200, log=True),
    }


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("popularity", "training.models.popularity:Popularity", "baseline"),
        _spec("item_knn", "training.models.item_knn:ItemKNN", "baseline", _item_knn_space),
        _spec("ease", "training.models.ease:EASE", "baseline", _ease_space),
        _spec("als", "training.models.als:ALS", "baseline", _als_space),
        _spec("bpr", "training.models.bpr:BPR", "baseline", _bpr_space),
        _spec("sasrec", "training.models.sasrec:SASRec", "model"),
        _spec("two_tower", "training.models.two_tower:TwoTower", "model"),
        _spec("item_knn_recent", "training.models.item_knn:ItemKNN", "model"),
        ModelSpec(
            FINAL_MODEL,
            lambda params, ctx: model_class("training.models.final:PathwaysFinal")(ctx.models, seed=ctx.seed, **params),
            None,
            "model",
        ),
    )
}
_EXTRA: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    """Add (or replace) a model under ``spec.name`` for this process."""
    _EXTRA[spec.name] = spec


def model_specs() -> dict[str, ModelSpec]:
    """Every model: the registry's, then the ``register``ed ones."""
    return {**REGISTRY, **_EXTRA}


def build(name: str, ctx: BuildContext, params: dict[str, Any] | None = None) -> Recommender:
    """An unfitted model ``name`` with its section of ``ctx.models`` (ValueError for unknown names)."""
    specs = model_specs()
    if name not in specs:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(specs)}")
    return specs[name].build(dict(params or {}), ctx)


def kinds() -> dict[str, str]:
    """name -> kind (``baseline`` or ``model``) of every model, in registry order."""
    return {name: spec.kind for name, spec in model_specs().items()}
