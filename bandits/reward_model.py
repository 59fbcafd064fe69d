"""Reward models q(x, a) for the direct method and doubly robust estimators.

``LogisticRewardModel`` fits P(reward | arm features, position) by logistic regression
(scikit-learn), optionally with a sparse one-hot title effect; ``fit_predict`` cross-fits (each
round is predicted by a model that never saw it), which keeps DR's interval honest. ``FixedRewardModel`` wraps a known q (the truth, in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from bandits.features import ArmFeaturizer
from bandits.log import BanditLog

POSITION_EDGES = np.array([1, 2, 3, 5, 8, 12, 20, 30])  # bucket boundaries for the position one-hot


class RewardModel(Protocol):
    def fit_predict(self, log: BanditLog) -> np.ndarray:
        """q_hat (n, A_max) for every round and arm of ``log``."""
        ...


@dataclass(frozen=True)
class FixedRewardModel:
    """A given q (n, A_max), e.g. the world's truth: DR with it is exact on noise-free rewards."""

    q: np.ndarray

    def fit_predict(self, log: BanditLog) -> np.ndarray:
        if self.q.shape[0] != len(log):
            raise ValueError(f"q: has {self.q.shape[0]} rows for a log of {len(log)}")
        return self.q


@dataclass(frozen=True)
class LogisticRewardModel:
    """Cross-fitted logistic regression on [arm features | mean features of the title's variants |
    position buckets | (title one-hot)]. The mean over variants stands in for the competition
    between them (the truth normalises each variant's appeal by the others')."""

    featurizer: ArmFeaturizer
    C: float = 10.0
    n_folds: int = 2
    seed: int = 0
    title_effects: bool = False  # per-title intercepts overfit at ~30 rounds per title

    def _parts(self, log: BanditLog) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
        """Arm features (n, A, D), their mean over each title's variants (n, D), and the
        round-level sparse block [position buckets | title one-hot]."""
        fz = self.featurizer
        feats = fz.transform(log.context, log.title_id)
        others = feats.sum(axis=1) / log.n_arms[:, None]  # the competition between variants
        n = len(log)
        bucket = np.searchsorted(POSITION_EDGES, log.position, side="right")
        blocks = [sp.csr_matrix((np.ones(n), (np.arange(n), bucket)), shape=(n, len(POSITION_EDGES) + 1))]
        if self.title_effects:
            blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), fz.rows(log.title_id))), shape=(n, len(fz.title_ids))))
        return feats, others, sp.hstack(blocks, format="csr")

    def _fit(self, log: BanditLog) -> LogisticRegression:
        y = (log.reward > 0).astype(np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError("reward: the reward model needs both rewarded and unrewarded rounds")
        feats, others, static = self._parts(log)
        chosen = feats[np.arange(len(log)), log.arm]
        model = LogisticRegression(C=self.C, max_iter=300)
        model.fit(sp.hstack([sp.csr_matrix(chosen), sp.csr_matrix(others), static], format="csr"), y)
        return model

    def _predict(self, model: LogisticRegression, log: BanditLog) -> np.ndarray:
        """The linear logit splits into an arm part and a round part: score every arm at once."""
        feats, others, static = self._parts(log)
        d = feats.shape[2]
        w = model.coef_[0]
        round_logit = others @ w[d : 2 * d] + static @ w[2 * d :] + model.intercept_[0]
        logit = feats @ w[:d].astype(np.float32) + round_logit[:, None]
        valid = np.arange(feats.shape[1])[None, :] < log.n_arms[:, None]
        return np.where(valid, 1.0 / (1.0 + np.exp(-logit)), 0.0)

    def fit_predict(self, log: BanditLog) -> np.ndarray:
        """Out-of-fold q_hat (n, A_max): fold k is predicted by a model fitted on the other folds."""
        if self.n_folds < 2:
            return self._predict(self._fit(log), log)
        fold = np.random.default_rng(self.seed).permutation(len(log)) % self.n_folds
        out = np.zeros((len(log), self.featurizer.max_arms))
        for k in range(self.n_folds):
            model = self._fit(log.take(fold != k))
            out[fold == k] = self._predict(model, log.take(fold == k))
        return out
