"""Reward models q(x, a) for the direct method and doubly robust estimators.

``LogisticRewardModel`` fits P(reward | arm features, position) by logistic regression
(scikit-learn), with a sparse one-hot title effect so that popular titles are not mistaken for
good artwork; ``fit_predict`` cross-fits (each round predicted by a model that never saw it), which
keeps DR's interval honest. ``FixedRewardModel`` wraps a known q (the truth, in tests).
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
    position buckets | title one-hot]. The mean over variants stands in for the competition
    between them (the truth normalises each variant's appeal by the others')."""

    featurizer: ArmFeaturizer
    C: float = 100.0
    n_folds: int = 2
    seed: int = 0
    title_effects: bool = True

    def _design(self, log: BanditLog, arms: np.ndarray) -> sp.csr_matrix:
        fz = self.featurizer
        dense = fz.transform_chosen(log.context, log.title_id, arms)
        others = np.empty_like(dense)  # the mean over the title's variants: the competition
        for lo in range(0, len(log), 65536):
            feats = fz.transform(log.context[lo : lo + 65536], log.title_id[lo : lo + 65536])
            others[lo : lo + 65536] = feats.sum(axis=1) / log.n_arms[lo : lo + 65536, None]
        bucket = np.searchsorted(POSITION_EDGES, log.position, side="right")
        blocks = [sp.csr_matrix(dense), sp.csr_matrix(others), sp.csr_matrix((np.ones(len(log)), (np.arange(len(log)), bucket)), shape=(len(log), len(POSITION_EDGES) + 1))]
        if self.title_effects:
            rows = fz.rows(log.title_id)
            blocks.append(sp.csr_matrix((np.ones(len(log)), (np.arange(len(log)), rows)), shape=(len(log), len(fz.title_ids))))
        return sp.hstack(blocks, format="csr")

    def _fit(self, log: BanditLog) -> LogisticRegression:
        y = (log.reward > 0).astype(np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError("reward: the reward model needs both rewarded and unrewarded rounds")
        model = LogisticRegression(C=self.C, max_iter=300)
        model.fit(self._design(log, log.arm), y)
        return model

    def _predict(self, model: LogisticRegression, log: BanditLog) -> np.ndarray:
        out = np.zeros((len(log), self.featurizer.max_arms))
        for a in range(self.featurizer.max_arms):
            has = log.n_arms > a
            if has.any():
                sub = log.take(has)
                out[has, a] = model.predict_proba(self._design(sub, np.full(len(sub), a)))[:, 1]
        return out

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
