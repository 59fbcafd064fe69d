"""The nightly artwork job: train a candidate on the logs, judge it offline, promote it or not.

The log is split in time order: the candidate learns from the first ``1 - holdout_fraction`` of
the rounds and both it and the current champion are estimated by doubly robust OPE on the rest
(one cross-fitted reward model shared by both). The candidate is logged and registered in MLflow
as a new version of ``name`` (alias ``challenger``); it becomes ``champion`` only when its DR
lower bound beats the champion's DR estimate. Without a champion, the bar is the value the
logging policy actually achieved on the held-out rounds (their mean reward). Every setting is in
``PathwaysConfig.bandits`` (``BanditConfig``).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import mlflow
import numpy as np

from bandits.artifact import download_policy, policy_probabilities, to_artifact
from bandits.estimators import BootstrapConfig, DoublyRobust, Estimate
from bandits.features import ArmFeaturizer
from bandits.log import BanditLog
from bandits.policies import make_policy
from bandits.reward_model import LogisticRewardModel
from pathways import tracking
from pathways.artifacts.registry import log_artifact_model
from pathways.config import BanditConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict with its numbers: candidate's DR estimate/interval vs the bar it had to beat."""

    promoted: bool
    reason: str
    candidate: Estimate
    baseline_value: float
    baseline: str  # "champion v3" or "logged behaviour"
    candidate_version: str
    champion_version: str | None  # the champion after the decision
    run_id: str


def split_log(log_: BanditLog, holdout_fraction: float) -> tuple[BanditLog, BanditLog]:
    """(train, holdout): the first rounds and the last ``holdout_fraction`` of them, in log order."""
    cut = int(round(len(log_) * (1.0 - holdout_fraction)))
    if cut < 1 or cut >= len(log_):
        raise ValueError(f"log: {len(log_)} rounds are too few to split at {holdout_fraction}")
    return log_.take(np.arange(cut)), log_.take(np.arange(cut, len(log_)))


def train_and_maybe_promote(
    log_: BanditLog, tracking_uri: str, featurizer: ArmFeaturizer, config: BanditConfig | None = None
) -> PromotionDecision:
    """Train, evaluate offline against the champion, log and register; promote on a clear win."""
    cfg = config or BanditConfig()
    tracking.configure(tracking_uri, cfg.experiment)
    train, holdout = split_log(log_, cfg.holdout_fraction)
    candidate = make_policy(cfg.kind, featurizer, **cfg.params).fit(train)

    q_hat = LogisticRewardModel(featurizer).fit_predict(holdout)
    dr = DoublyRobust(BootstrapConfig(cfg.n_bootstrap, cfg.alpha, cfg.bootstrap_seed))
    cand_est = dr.estimate(holdout, candidate, q_hat=q_hat)
    champion_version = tracking.alias_version(cfg.name, tracking.CHAMPION)
    champion = download_policy(tracking.alias_uri(cfg.name, tracking.CHAMPION))[0] if champion_version else None
    if champion is not None and champion.featurizer is not None and champion.featurizer.context_names == featurizer.context_names:
        champion.featurizer = featurizer  # score the champion on today's catalog layout
        base_value = dr.estimate(holdout, champion, q_hat=q_hat).value
        baseline = f"champion v{champion_version}"
    else:  # no champion, or one trained on another context layout: beat what was served
        base_value, baseline = float(holdout.reward.mean()), "logged behaviour"
    promoted = cand_est.lo > base_value
    reason = (
        f"candidate DR lower bound {cand_est.lo:.5f} {'>' if promoted else '<='} {baseline} estimate {base_value:.5f}"
    )

    with mlflow.start_run(run_name=f"artwork-{cfg.kind}") as run:
        tracking.log_params_flat({"kind": cfg.kind, "holdout_fraction": cfg.holdout_fraction, **cfg.params})
        mlflow.log_metrics(
            {
                "n_train": len(train),
                "n_holdout": len(holdout),
                "candidate_dr": cand_est.value,
                "candidate_dr_lo": cand_est.lo,
                "candidate_dr_hi": cand_est.hi,
                "candidate_ess": cand_est.ess,
                "baseline_value": base_value,
                "promoted": float(promoted),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MLflow asks for predict type hints
            artifact = to_artifact(candidate, version=f"{cfg.kind}-{run.info.run_id[:8]}")
            info = log_artifact_model("artwork_policy", artifact, "artwork_policy",
                                      tracking.PIP_REQUIREMENTS + ["scikit-learn==1.9.1"], predictor=policy_probabilities)
    version = tracking.register(info.model_uri, cfg.name, alias=tracking.CHALLENGER, tags={"kind": cfg.kind})
    if promoted:
        tracking.set_alias(cfg.name, tracking.CHAMPION, version)
    log.info("artwork nightly: %s -> %s", reason, "promoted" if promoted else "kept champion")
    return PromotionDecision(
        promoted=promoted,
        reason=reason,
        candidate=cand_est,
        baseline_value=base_value,
        baseline=baseline,
        candidate_version=version,
        champion_version=version if promoted else champion_version,
        run_id=run.info.run_id,
    )
