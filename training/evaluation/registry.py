"""The models the harness knows: name -> ``ModelSpec`` (how to build it, what to tune).

Baselines register here. Other packages add models without touching this file:
``training.models`` may define ``EVAL_MODELS: dict[str, Callable[[EvalContext], Recommender]]``
(each factory builds a model with its default settings; such models tune themselves on a
validation split carved from the train data they are given) and ``FINAL_MODEL: str`` (the name
of the model whose ranked list Pathways serves as its top row). It is imported lazily; when it
is missing, the registry simply lists the baselines. ``register(spec)`` adds a spec at run time.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.recommender import Recommender

MODELS_MODULE = "training.models"


@dataclass(frozen=True)
class EvalContext:
    """What a model may know besides train interactions: item side information and the seed."""

    item_genres: list[list[str]] = field(default_factory=list)  # dense item -> genres
    seed: int = 0

    def genre_features(self) -> np.ndarray:
        """(n_items, n_genres) float32 multi-hot."""
        from training.evaluation.metrics import genre_matrix

        return genre_matrix(self.item_genres)


@dataclass(frozen=True)
class ModelSpec:
    """``build(params, ctx)`` returns an unfitted model; ``search_space(trial)`` its tunables (or None)."""

    name: str
    build: Callable[[dict[str, Any], EvalContext], Recommender]
    search_space: Callable[[Any], dict[str, Any]] | None = None
    kind: str = "baseline"  # "baseline" or "model"


_EXTRA: dict[str, ModelSpec] = {}


def _baseline_spec(name: str, cls: type) -> ModelSpec:
    takes_seed = "seed" in inspect.signature(cls.__init__).parameters

    def build(params: dict[str, Any], ctx: EvalContext) -> Recommender:
        return cls(**params, seed=ctx.seed) if takes_seed else cls(**params)

    space = cls.search_space if cls.search_space(_NoTrial()) else None
    return ModelSpec(name, build, space, "baseline")


class _NoTrial:
    """Answers every suggest_* with None, to find out whether a search space is empty."""

    def __getattr__(self, attr: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _external_module() -> Any | None:
    try:
        return importlib.import_module(MODELS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name in (MODELS_MODULE, "training"):
            return None
        raise


def register(spec: ModelSpec) -> None:
    """Add (or replace) a model under ``spec.name``."""
    _EXTRA[spec.name] = spec


def model_specs() -> dict[str, ModelSpec]:
    """Every available model: baselines, then ``training.models.EVAL_MODELS``, then ``register``ed ones."""
    from training.baselines import BASELINES

    specs = {name: _baseline_spec(name, cls) for name, cls in BASELINES.items()}
    module = _external_module()
    for name, factory in (getattr(module, "EVAL_MODELS", None) or {}).items():
        specs[name] = ModelSpec(name, lambda params, ctx, f=factory: f(ctx), None, "model")
    specs.update(_EXTRA)
    return specs


def final_model_name() -> str | None:
    """``training.models.FINAL_MODEL`` when that module defines it and registers the model, else None."""
    name = getattr(_external_module(), "FINAL_MODEL", None)
    return name if name and name in model_specs() else None


def baseline_names() -> list[str]:
    return [name for name, spec in model_specs().items() if spec.kind == "baseline"]
