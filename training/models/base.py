"""What model classes share: settings from a config section, a seed, persistence, implicit's fitting.

``ConfiguredModel``: the section plus keyword overrides, the seed, pickled ``save``/``load``;
``ImplicitFactorization``: fitting a matrix factorization from ``implicit`` on top of it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from training.recommender import Interactions, Pickled

C = TypeVar("C", bound=BaseModel)


def configured(default: type[C], config: C | None, overrides: dict[str, Any]) -> C:
    """``config`` (or the section's defaults) with ``overrides`` applied and validated."""
    base = config if config is not None else default()
    return default.model_validate({**base.model_dump(), **overrides}) if overrides else base


class ConfiguredModel(Pickled):
    """``Model(section, seed=0, **overrides)``: hyperparameters are the config section (``self.config``),
    learned state is set in ``fit`` only (what the harness tunes: ``training.registry``)."""

    name: str
    section: ClassVar[type[BaseModel]]

    def __init__(self, config: Any = None, *, seed: int = 0, name: str | None = None, **overrides: Any) -> None:
        self.config = configured(self.section, config, overrides)
        self.seed = seed
        if name is not None:  # a registered variant of the algorithm, e.g. item_knn_recent
            self.name = name

    def get_params(self) -> dict[str, Any]:
        return {**self.config.model_dump(), "seed": self.seed}


class ImplicitFactorization(ConfiguredModel):
    """A model from ``implicit`` fitted on a (n_users, n_items) CSR: score = user_factors . item_factors.

    BLAS is limited to one thread while implicit runs (it warns otherwise). Subclasses say which
    matrix implicit sees (``_matrix``) and build the implicit model (``_model``); ``reports_loss``
    when implicit's fit callback passes (iteration, seconds, loss).
    """

    reports_loss: ClassVar[bool] = False

    def fit(self, train: Interactions, *, valid: Interactions | None = None,
            item_features: np.ndarray | None = None) -> Self:
        x = self._matrix(train)
        self.losses_: list[float] = []  # per iteration, when implicit computes the training loss

        def record(iteration: int, seconds: float, loss: float | None) -> None:
            if loss is not None:
                self.losses_.append(float(loss))

        with threadpool_limits(1, "blas"):
            model = self._model()
            model.fit(x, show_progress=False, callback=record if self.reports_loss else None)
        self.user_factors_ = np.asarray(model.user_factors, np.float32)
        self.item_factors_ = np.asarray(model.item_factors, np.float32)
        return self

    def _matrix(self, train: Interactions) -> sp.csr_matrix:
        return train.matrix(binary=True)

    def _model(self) -> Any:
        raise NotImplementedError

    def user_embeddings(self, users: np.ndarray) -> np.ndarray:
        """(len(users), factors) float32."""
        return self.user_factors_[np.asarray(users, np.int64)]

    def item_embeddings(self) -> np.ndarray:
        """(n_items, factors) float32."""
        return self.item_factors_

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 dot products."""
        return self.user_embeddings(users) @ self.item_factors_.T
