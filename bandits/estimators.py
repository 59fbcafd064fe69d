"""Off-policy estimators of a target policy's value from logged rounds, with bootstrap intervals.

Notation for round i of n: context x_i, logged arm a_i with propensity p_i, reward r_i; target
pi (``pi[i, a]``); reward model q_hat (``q[i, a]``); weight ``w_i = pi(a_i | x_i) / p_i``.

=============  ==========================================================  =======================
estimator      value                                                       needs
=============  ==========================================================  =======================
IPS            mean_i w_i r_i                                              propensities
SNIPS          sum_i w_i r_i / sum_i w_i                                   propensities
DirectMethod   mean_i sum_a pi[i, a] q[i, a]                               reward model
DoublyRobust   DM_i + w_i (r_i - q[i, a_i]), averaged                      both
SwitchDR       DM_i + 1{w_i <= tau} w_i (r_i - q[i, a_i]), averaged        both; tau caps variance
Replay         mean of r_i over rounds where the target picks a_i          uniform logging
=============  ==========================================================  =======================

Every estimator is a ratio of per-round sums ``sum num_i / sum den_i`` (den = 1 for the means),
so one percentile bootstrap (rounds resampled with replacement, seeded) serves all of them.
``ess`` is the effective sample size ``(sum w)^2 / sum w^2`` (n for DM, matches for Replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bandits.log import BanditLog
from bandits.reward_model import RewardModel


@dataclass(frozen=True)
class Estimate:
    """A policy value with its (1 - alpha) bootstrap interval [lo, hi] and effective sample size."""

    estimator: str
    value: float
    lo: float
    hi: float
    ess: float
    n: int


@dataclass(frozen=True)
class BootstrapConfig:
    n_bootstrap: int = 200
    alpha: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_bootstrap < 10 or not 0 < self.alpha < 1:
            raise ValueError("n_bootstrap must be >= 10 and alpha in (0, 1)")


def target_distribution(log: BanditLog, target: Any) -> np.ndarray:
    """pi (n, A) from a policy (``action_probabilities``) or a given array; validated."""
    pi = np.asarray(target if isinstance(target, np.ndarray) else target.action_probabilities(log), dtype=np.float64)
    if pi.ndim != 2 or pi.shape[0] != len(log) or pi.shape[1] < int(log.n_arms.max()):
        raise ValueError(f"target: expected probabilities ({len(log)}, >= {int(log.n_arms.max())}), got {pi.shape}")
    valid = np.arange(pi.shape[1])[None, :] < log.n_arms[:, None]
    if np.any(pi < 0) or np.any(pi[~valid] > 0) or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("target: each row must be a distribution over the round's n_arms arms")
    return pi


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, cfg: BootstrapConfig) -> tuple[float, float]:
    """Percentile interval of ``sum(num) / sum(den)`` over resampled rounds."""
    rng = np.random.default_rng(cfg.seed)
    n = len(num)
    stats = np.empty(cfg.n_bootstrap)
    chunk = max(1, 4_000_000 // max(n, 1))
    for lo in range(0, cfg.n_bootstrap, chunk):
        k = min(chunk, cfg.n_bootstrap - lo)
        idx = rng.integers(0, n, (k, n))
        d = den[idx].sum(axis=1)
        stats[lo : lo + k] = np.where(d > 0, num[idx].sum(axis=1) / np.where(d > 0, d, 1.0), np.nan)
    lo_q, hi_q = np.nanquantile(stats, [cfg.alpha / 2, 1 - cfg.alpha / 2])
    return float(lo_q), float(hi_q)


class Estimator:
    """Base: subclasses give the per-round (num, den, weights) for ``estimate`` to aggregate."""

    name = "estimator"
    needs_reward_model = False

    def __init__(self, bootstrap: BootstrapConfig | None = None, reward_model: RewardModel | None = None) -> None:
        self.bootstrap = bootstrap or BootstrapConfig()
        self.reward_model = reward_model

    def estimate(self, log: BanditLog, target_policy: Any, q_hat: np.ndarray | None = None) -> Estimate:
        """V(target_policy) from ``log``. ``q_hat`` (n, A) overrides the reward model if given."""
        if len(log) == 0:
            raise ValueError("log: empty")
        pi = target_distribution(log, target_policy)
        if self.needs_reward_model and q_hat is None:
            if self.reward_model is None:
                raise ValueError(f"{self.name}: needs a reward_model or q_hat")
            q_hat = self.reward_model.fit_predict(log)
        if q_hat is not None and q_hat.shape[0] != len(log):
            raise ValueError(f"q_hat: has {q_hat.shape[0]} rows for a log of {len(log)}")
        num, den, ess = self._terms(log, pi, q_hat)
        value = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
        lo, hi = bootstrap_ratio(num, den, self.bootstrap)
        return Estimate(self.name, value, lo, hi, float(ess), len(log))

    def _terms(self, log: BanditLog, pi: np.ndarray, q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
        raise NotImplementedError

    @staticmethod
    def _weights(log: BanditLog, pi: np.ndarray) -> np.ndarray:
        return pi[np.arange(len(log)), log.arm] / log.propensity

    @staticmethod
    def _ess(w: np.ndarray) -> float:
        s2 = float((w * w).sum())
        return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0


class IPS(Estimator):
    name = "IPS"

    def _terms(self, log, pi, q):
        w = self._weights(log, pi)
        return w * log.reward, np.ones(len(log)), self._ess(w)


class SNIPS(Estimator):
    name = "SNIPS"

    def _terms(self, log, pi, q):
        w = self._weights(log, pi)
        return w * log.reward, w, self._ess(w)


class DirectMethod(Estimator):
    name = "DM"
    needs_reward_model = True

    def _terms(self, log, pi, q):
        return (pi[:, : q.shape[1]] * q[:, : pi.shape[1]]).sum(axis=1), np.ones(len(log)), float(len(log))


class DoublyRobust(Estimator):
    name = "DR"
    needs_reward_model = True

    def _correction_mask(self, w: np.ndarray) -> np.ndarray:
        return np.ones(len(w), dtype=bool)

    def _terms(self, log, pi, q):
        w = self._weights(log, pi)
        dm = (pi[:, : q.shape[1]] * q[:, : pi.shape[1]]).sum(axis=1)
        q_logged = q[np.arange(len(log)), log.arm]
        keep = self._correction_mask(w)
        return dm + keep * w * (log.reward - q_logged), np.ones(len(log)), self._ess(w * keep)


class SwitchDR(DoublyRobust):
    """DR whose importance-weighted correction is dropped where w > tau (the DM term stays)."""

    name = "SwitchDR"

    def __init__(self, tau: float = 10.0, bootstrap: BootstrapConfig | None = None, reward_model: RewardModel | None = None) -> None:
        if tau <= 0:
            raise ValueError(f"tau: must be > 0, got {tau}")
        super().__init__(bootstrap, reward_model)
        self.tau = tau

    def _correction_mask(self, w: np.ndarray) -> np.ndarray:
        return w <= self.tau


class Replay(Estimator):
    """Li et al. (2011): keep the rounds where the target's own (seeded) choice equals the logged
    arm. Unbiased when the logging policy is uniform; the interval is over the matched rounds."""

    name = "Replay"

    def __init__(self, bootstrap: BootstrapConfig | None = None, seed: int = 0) -> None:
        super().__init__(bootstrap)
        self.seed = seed

    def _terms(self, log, pi, q):
        cdf = np.cumsum(pi, axis=1)
        u = np.random.default_rng(self.seed).random(len(log))
        choice = np.minimum((cdf <= u[:, None] * cdf[:, -1:]).sum(axis=1), pi.shape[1] - 1)
        match = (choice == log.arm).astype(np.float64)
        return match * log.reward, match, float(match.sum())


def standard_estimators(reward_model: RewardModel | None, bootstrap: BootstrapConfig | None = None, tau: float = 10.0) -> list[Estimator]:
    """The full panel, in table order: IPS, SNIPS, DM, DR, SwitchDR, Replay."""
    return [
        IPS(bootstrap),
        SNIPS(bootstrap),
        DirectMethod(bootstrap, reward_model),
        DoublyRobust(bootstrap, reward_model),
        SwitchDR(tau, bootstrap, reward_model),
        Replay(bootstrap),
    ]
