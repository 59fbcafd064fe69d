"""BPR: implicit's Bayesian Personalized Ranking (Rendle 2009) on the binary train matrix.

score(u) = user_factors[u] . item_factors^T. Its Hogwild updates make results depend on
``num_threads``, so the default is one thread.
"""

from __future__ import annotations

from typing import Any

from pathways.models_config import BPRConfig
from training.models.base import ImplicitFactorization


class BPR(ImplicitFactorization):
    name = "bpr"
    section = BPRConfig
    config: BPRConfig

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        cfg = self.config
        return BayesianPersonalizedRanking(
            factors=cfg.factors,
            learning_rate=cfg.learning_rate,
            regularization=cfg.regularization,
            iterations=cfg.iterations,
            random_state=self.seed,
            num_threads=cfg.num_threads,
        )
