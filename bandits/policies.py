"""Artwork policies behind one contract: config (frozen dataclass) + ``select``/``fit``/``update``.

A policy maps per-arm features (``ArmFeaturizer.transform``: (n, A_max, D), padded arms beyond
``n_arms`` ignored) to a distribution over arms, ``probabilities`` (n, A_max), rows summing to 1.
``select``/``select_batch`` draw from it with the caller's generator and return the arm with its
propensity. Deterministic rules (greedy, UCB) are served with an exploration floor ``epsilon``:
``pi = (1 - epsilon) * onehot(argmax) + epsilon / n_arms``, so every propensity is > 0.

Learning is from logged rounds (``fit`` starts over, ``update`` adds): linear policies keep ridge
statistics ``A = l2 I + sum w phi phi^T`` and ``b = sum w r phi`` over the chosen arms, where
``w = 1 / (n_arms * propensity)`` re-weights logs of a non-uniform policy to look uniform.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression

from bandits.features import ArmFeaturizer
from bandits.log import BanditLog


def arm_mask(n_arms: np.ndarray, max_arms: int) -> np.ndarray:
    """bool (n, max_arms): True for the arms each round really has."""
    return np.arange(max_arms)[None, :] < np.asarray(n_arms)[:, None]


def greedy_with_floor(scores: np.ndarray, n_arms: np.ndarray, epsilon: float) -> np.ndarray:
    """(1 - epsilon) on each row's best valid arm, epsilon spread evenly over its valid arms."""
    mask = arm_mask(n_arms, scores.shape[1])
    best = np.argmax(np.where(mask, scores, -np.inf), axis=1)
    probs = np.where(mask, epsilon / np.asarray(n_arms)[:, None], 0.0)
    probs[np.arange(len(best)), best] += 1.0 - epsilon
    return probs


def draw(probs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One arm per row of ``probs`` (n, A) by inverse CDF; returns (arms int64 (n,), propensities (n,))."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    arms = np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1)
    # never land on a zero-probability (padded) arm through rounding
    arms = np.where(probs[np.arange(len(arms)), arms] > 0, arms, np.argmax(probs, axis=1))
    return arms, probs[np.arange(len(arms)), arms]


def draw_grouped(probs: np.ndarray, which: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``draw(probs[which], rng)`` (the same generator calls, the same arms and propensities) for
    rounds sharing a few distinct distributions ``probs`` (L, A): each group's arms by one
    ``searchsorted`` in its CDF, no (n, A) arrays. Many distinct rows: ``draw`` itself."""
    if len(probs) > 4:
        return draw(probs[which], rng)
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(which)) * cdf[which, -1]
    arms = np.empty(len(which), dtype=np.int64)
    for group in range(len(probs)):
        mask = which == group
        arms[mask] = np.searchsorted(cdf[group], u[mask], side="right")  # how many CDF steps are <= u
    arms = np.minimum(arms, probs.shape[1] - 1)
    arms = np.where(probs[which, arms] > 0, arms, np.argmax(probs, axis=1)[which])
    return arms, probs[which, arms]


class Policy(ABC):
    """Base of every artwork policy. Subclasses set ``kind`` and ``Config``; learned state ends in ``_``."""

    kind: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None, featurizer: ArmFeaturizer | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.featurizer = featurizer

    @abstractmethod
    def probabilities(self, contexts: np.ndarray, n_arms: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """pi(a | x) for arm features (n, A, D): float64 (n, A), zero beyond ``n_arms``."""

    def select(self, context: np.ndarray, n_arms: int, rng: np.random.Generator) -> tuple[int, float]:
        """One round: arm features (A, D) -> (arm, propensity)."""
        arms, props = self.select_batch(np.asarray(context)[None], np.array([n_arms]), rng)
        return int(arms[0]), float(props[0])

    def select_batch(self, contexts: np.ndarray, n_arms: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Many rounds at once: (n, A, D) -> arms int64 (n,), propensities float64 (n,)."""
        return draw(self.probabilities(contexts, n_arms, rng), rng)

    def action_probabilities(self, log: BanditLog, chunk: int = 65536) -> np.ndarray:
        """pi(a | x_i) on every logged round, (n, A_max of the featurizer); what OPE consumes."""
        fz = self._require_featurizer()
        out = np.zeros((len(log), fz.max_arms))
        rng = np.random.default_rng(0)  # only stochastic policies (Thompson) use it
        for lo in range(0, len(log), chunk):
            sl = slice(lo, lo + chunk)
            out[sl] = self.probabilities(fz.transform(log.context[sl], log.title_id[sl]), log.n_arms[sl], rng)
        return out

    def fit(self, log: BanditLog) -> Policy:
        """Learn from scratch on ``log``; returns self."""
        self._reset()
        return self.update(log)

    def update(self, log: BanditLog) -> Policy:
        """Learn from more logged rounds (default: nothing to learn)."""
        return self

    def _reset(self) -> None:
        pass

    def get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays, for saving."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> Policy:
        return self

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self.config)}

    def _require_featurizer(self) -> ArmFeaturizer:
        if self.featurizer is None:
            raise ValueError(f"{self.kind}: needs a featurizer to read logs")
        return self.featurizer

    def _chosen(self, log: BanditLog) -> tuple[np.ndarray, np.ndarray]:
        """Chosen-arm features (n, D) and the uniformizing weights (n,)."""
        x = self._require_featurizer().transform_chosen(log.context, log.title_id, log.arm)
        return x, 1.0 / (log.n_arms * log.propensity)


@dataclass(frozen=True)
class UniformConfig:
    pass


class UniformRandom(Policy):
    """Every variant with probability 1 / n_arms: the logging policy that makes OPE easiest."""

    kind = "uniform"
    Config = UniformConfig

    def probabilities(self, contexts, n_arms, rng=None):
        n_arms = np.asarray(n_arms)
        return arm_mask(n_arms, contexts.shape[1]) / n_arms[:, None]

    def action_probabilities(self, log: BanditLog, chunk: int = 65536) -> np.ndarray:
        width = self.featurizer.max_arms if self.featurizer else int(log.n_arms.max())
        return arm_mask(log.n_arms, width) / log.n_arms[:, None]


@dataclass(frozen=True)
class LinearConfig:
    """Ridge penalty ``l2``; exploration floor ``epsilon``; ``alpha`` scales LinUCB's bonus and the
    Thompson posterior's spread; ``n_samples`` posterior draws estimate Thompson's propensities."""

    l2: float = 1.0
    epsilon: float = 0.05
    alpha: float = 1.0
    n_samples: int = 32
    weighted: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError(f"epsilon: must be in (0, 1], got {self.epsilon}")
        if self.l2 <= 0 or self.alpha < 0 or self.n_samples < 1:
            raise ValueError("l2 must be > 0, alpha >= 0, n_samples >= 1")


class _Linear(Policy):
    """Shared ridge statistics for epsilon-greedy, LinUCB and Thompson sampling."""

    Config = LinearConfig

    def _reset(self) -> None:
        d = self._require_featurizer().dim
        self.A_ = self.config.l2 * np.eye(d)
        self.b_ = np.zeros(d)
        self.sse_ = np.zeros(2)  # sum w r^2, sum w: for the residual scale
        self._solve()

    def update(self, log: BanditLog) -> Policy:
        if not hasattr(self, "A_"):
            self._reset()
        x, w = self._chosen(log)
        if not self.config.weighted:
            w = np.ones_like(w)
        x = x.astype(np.float64)
        self.A_ += (x * w[:, None]).T @ x
        self.b_ += x.T @ (w * log.reward)
        self.sse_ += [float(w @ log.reward.astype(np.float64) ** 2), float(w.sum())]
        self._solve()
        return self

    def _solve(self) -> None:
        self.A_inv_ = np.linalg.inv(self.A_)
        self.theta_ = self.A_inv_ @ self.b_
        fitted = self.theta_ @ self.b_  # sum w (x theta) r, the explained part
        self.sigma_ = float(np.sqrt(max(self.sse_[0] - fitted, 1e-12) / max(self.sse_[1], 1.0))) if self.sse_[1] else 1.0

    def _mean_scores(self, contexts: np.ndarray) -> np.ndarray:
        return contexts @ self.theta_.astype(np.float32)

    def get_state(self):
        return {"A": self.A_, "b": self.b_, "sse": self.sse_}

    def set_state(self, state):
        self.A_, self.b_, self.sse_ = (np.asarray(state[k], dtype=np.float64) for k in ("A", "b", "sse"))
        self._solve()
        return self


class EpsilonGreedy(_Linear):
    """Ridge reward model; best predicted arm with probability 1 - epsilon, else uniform."""

    kind = "epsilon_greedy"

    def probabilities(self, contexts, n_arms, rng=None):
        return greedy_with_floor(self._mean_scores(contexts), n_arms, self.config.epsilon)


class LinUCB(_Linear):
    """Optimism: score = phi theta + alpha * sigma * sqrt(phi A^-1 phi); served with the floor."""

    kind = "linucb"

    def probabilities(self, contexts, n_arms, rng=None):
        flat = contexts.reshape(-1, contexts.shape[2])
        width = ((flat @ self.A_inv_.astype(np.float32)) * flat).sum(axis=1).reshape(contexts.shape[:2])
        ucb = self._mean_scores(contexts) + self.config.alpha * self.sigma_ * np.sqrt(np.maximum(width, 0.0))
        return greedy_with_floor(ucb, n_arms, self.config.epsilon)


class LinearThompson(_Linear):
    """Thompson sampling: theta ~ N(theta_hat, (alpha sigma)^2 A^-1); pi(a) = P(a is argmax).

    pi is estimated from ``n_samples`` posterior draws (made with the caller's generator) and
    mixed with the floor; the arm is then drawn from exactly that distribution, so the logged
    propensity is the probability the arm really had.
    """

    kind = "thompson"

    def probabilities(self, contexts, n_arms, rng=None):
        rng = rng if rng is not None else np.random.default_rng(0)
        chol = np.linalg.cholesky(self.A_inv_ + 1e-12 * np.eye(len(self.theta_)))
        draws = self.theta_ + self.config.alpha * self.sigma_ * rng.standard_normal((self.config.n_samples, len(self.theta_))) @ chol.T
        scores = contexts @ draws.T.astype(np.float32)  # (n, A, M)
        mask = arm_mask(n_arms, contexts.shape[1])
        best = np.argmax(np.where(mask[:, :, None], scores, -np.inf), axis=1)  # (n, M)
        cells = (np.arange(len(best))[:, None] * mask.shape[1] + best).reshape(-1)
        wins = np.bincount(cells, minlength=mask.size).reshape(mask.shape).astype(np.float64)
        eps = self.config.epsilon
        return (1 - eps) * wins / self.config.n_samples + np.where(mask, eps / np.asarray(n_arms)[:, None], 0.0)


@dataclass(frozen=True)
class LogisticConfig:
    """L2 strength ``C`` (sklearn's inverse regularisation) and the exploration floor ``epsilon``."""

    C: float = 1.0
    epsilon: float = 0.05
    max_iter: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.epsilon <= 1.0:
            raise ValueError(f"epsilon: must be in (0, 1], got {self.epsilon}")


class LogisticGreedy(Policy):
    """P(click | arm features) by weighted logistic regression (scikit-learn); greedy + floor.

    Logistic regression keeps no sufficient statistics: ``update`` refits on the rounds it is
    given, so the nightly job passes the accumulated log.
    """

    kind = "logistic"
    Config = LogisticConfig

    def _reset(self) -> None:
        self.coef_ = np.zeros(self._require_featurizer().dim)
        self.intercept_ = 0.0

    def update(self, log: BanditLog) -> Policy:
        x, w = self._chosen(log)
        y = (log.reward > 0).astype(np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError("reward: logistic policy needs both clicks and non-clicks to learn")
        model = LogisticRegression(C=self.config.C, max_iter=self.config.max_iter)
        model.fit(x, y, sample_weight=w / w.mean())
        self.coef_, self.intercept_ = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        return self

    def probabilities(self, contexts, n_arms, rng=None):
        return greedy_with_floor(contexts @ self.coef_.astype(np.float32), n_arms, self.config.epsilon)

    def get_state(self):
        return {"coef": self.coef_, "intercept": np.array([self.intercept_])}

    def set_state(self, state):
        self.coef_, self.intercept_ = np.asarray(state["coef"], np.float64), float(state["intercept"][0])
        return self


POLICY_KINDS: dict[str, type[Policy]] = {
    p.kind: p for p in (UniformRandom, EpsilonGreedy, LinUCB, LinearThompson, LogisticGreedy)
}


def make_policy(kind: str, featurizer: ArmFeaturizer | None = None, **params: Any) -> Policy:
    """A policy by kind name with config overrides, e.g. ``make_policy("linucb", fz, alpha=0.5)``."""
    if kind not in POLICY_KINDS:
        raise ValueError(f"kind: unknown policy {kind!r}; known: {sorted(POLICY_KINDS)}")
    cls = POLICY_KINDS[kind]
    return cls(cls.Config(**params), featurizer)
