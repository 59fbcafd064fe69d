"""Matrix factorization baselines from ``implicit``: ALS (Hu, Koren & Volinsky 2008) and BPR (Rendle 2009).

Both fit the (n_users, n_items) train matrix that implicit expects (user x item CSR). ALS sees a
weighted matrix: ``weighting`` is ``none`` (binary), ``bm25`` (implicit's bm25_weight, K1=100,
B=0.8) or ``tfidf``, scaled by ``alpha`` (confidence 1 + alpha * w for observed pairs).
score(u) = user_factors[u] . item_factors^T. BLAS is limited to one thread during fit (implicit
warns otherwise); ``num_threads`` is implicit's own parallelism (0 = all cores): ALS solves each
user and item independently, so its result does not depend on it; BPR's Hogwild updates do, so
BPR defaults to 1 thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.recommender import Interactions

WEIGHTINGS = ("none", "bm25", "tfidf")


def weighted(x: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    """The binary matrix ``x`` re-weighted per column (item) by ``weighting``."""
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    if weighting == "none":
        return x.astype(np.float32)
    if weighting == "bm25":
        return bm25_weight(x, K1=100, B=0.8).tocsr().astype(np.float32)
    if weighting == "tfidf":
        return tfidf_weight(x).tocsr().astype(np.float32)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


class _Factorization:
    name = "mf"

    def fit(self, train: Interactions) -> "_Factorization":
        x = self._matrix(train.matrix(binary=True))
        model = self._model()
        with threadpool_limits(1, "blas"):
            model.fit(x, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, np.float32)
        self.item_factors_ = np.asarray(model.item_factors, np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 dot products."""
        return self.user_factors_[users] @ self.item_factors_.T

    def _matrix(self, x: sp.csr_matrix) -> sp.csr_matrix:
        return x

    def _model(self) -> Any:
        raise NotImplementedError


class ALS(_Factorization):
    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        weighting: str = "bm25",
        seed: int = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.seed = seed
        self.num_threads = num_threads

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_int("factors", 16, 192, log=True),
            "regularization": trial.suggest_float("regularization", 1e-3, 10.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.5, 100.0, log=True),
            "iterations": trial.suggest_int("iterations", 5, 25),
            "weighting": trial.suggest_categorical("weighting", list(WEIGHTINGS)),
        }

    def get_params(self) -> dict[str, Any]:
        keys = ("factors", "regularization", "alpha", "iterations", "weighting", "seed")
        return {k: getattr(self, k) for k in keys}

    def _matrix(self, x: sp.csr_matrix) -> sp.csr_matrix:
        return weighted(x, self.weighting)

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=self.num_threads,
        )


class BPR(_Factorization):
    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_int("factors", 16, 192, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.2, log=True),
            "regularization": trial.suggest_float("regularization", 1e-5, 0.1, log=True),
            "iterations": trial.suggest_int("iterations", 20, 200, log=True),
        }

    def get_params(self) -> dict[str, Any]:
        keys = ("factors", "learning_rate", "regularization", "iterations", "seed")
        return {k: getattr(self, k) for k in keys}

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.seed,
            num_threads=self.num_threads,
        )
