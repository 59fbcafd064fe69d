"""Compare candidate policies on one log: every estimator for every policy, as rows and a table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandits.estimators import BootstrapConfig, Estimate, standard_estimators
from bandits.features import ArmFeaturizer
from bandits.log import BanditLog
from bandits.policies import Policy, make_policy
from bandits.reward_model import LogisticRewardModel


@dataclass(frozen=True)
class PolicyEstimate:
    policy: str
    estimate: Estimate


def train_candidates(log: BanditLog, featurizer: ArmFeaturizer, kinds: list[str]) -> dict[str, Policy]:
    """Fit one policy per kind on ``log`` (uniform needs no fitting)."""
    return {kind: make_policy(kind, featurizer).fit(log) for kind in kinds}


def evaluate_policies(
    log: BanditLog, policies: dict[str, Policy], featurizer: ArmFeaturizer, bootstrap: BootstrapConfig | None = None
) -> list[PolicyEstimate]:
    """All estimators (IPS, SNIPS, DM, DR, SwitchDR, Replay) for each policy, one shared q_hat."""
    q_hat = LogisticRewardModel(featurizer).fit_predict(log)
    rows = []
    for name, policy in policies.items():
        pi = policy.action_probabilities(log)
        for est in standard_estimators(None, bootstrap):
            rows.append(PolicyEstimate(name, est.estimate(log, pi, q_hat=q_hat)))
    return rows


def format_table(rows: list[PolicyEstimate]) -> str:
    """A fixed-width table: policy, estimator, estimate, 95% interval, effective sample size."""
    lines = [f"{'policy':<16}{'estimator':<10}{'estimate':>10}  {'interval':<21}{'ess':>10}"]
    for r in rows:
        e = r.estimate
        lines.append(f"{r.policy:<16}{e.estimator:<10}{e.value:>10.5f}  [{e.lo:.5f}, {e.hi:.5f}]  {e.ess:>10.0f}")
    return "\n".join(lines)


def split_halves(log: BanditLog, seed: int = 0) -> tuple[BanditLog, BanditLog]:
    """A seeded random half for training and the other half for evaluation."""
    perm = np.random.default_rng(seed).permutation(len(log))
    return log.take(np.sort(perm[: len(log) // 2])), log.take(np.sort(perm[len(log) // 2 :]))
