"""Artwork at serving time: one variant per title on the page, with its propensity for the log.

``ArtworkSelector`` wraps the promoted policy. Its exploration is replayable: the generator for a
page is ``decision_rng(base_seed, profile_id, request_id)``, so the same request gets the same
artwork. Titles the policy's featurizer does not know get their default artwork (arm 0,
propensity 1). ``choose_artwork`` is the explicit fallback step: no selector, or a selector that
fails, gives ``DefaultArtwork`` for the page and says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bandits.policies import Policy
from bandits.rng import decision_rng

log = logging.getLogger(__name__)
ContextFn = Callable[[np.ndarray], np.ndarray]  # profile ids (n,) -> context (n, S)


@dataclass(frozen=True)
class DefaultArtwork:
    """The fallback: every title's default artwork (variant 0), chosen with certainty."""

    version: str = "default"

    def select_page(self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str) -> tuple[np.ndarray, np.ndarray]:
        n = len(np.asarray(title_ids))
        return np.zeros(n, dtype=np.int64), np.ones(n)


@dataclass(frozen=True)
class ArtworkSelector:
    """A policy (with its featurizer), where contexts come from, and the exploration base seed."""

    policy: Policy
    context_fn: ContextFn
    version: str
    base_seed: int = 0

    def select_page(self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Arms int64 (n,) and propensities (n,) for the page's titles (any order, e.g. 40 x 40 flattened).

        ``positions`` (n,) are where each title sits; the policy's choice does not depend on them
        but they are checked so the caller logs the same rounds it served.
        """
        titles = np.asarray(title_ids, dtype=np.int64)
        if np.asarray(positions).shape != titles.shape:
            raise ValueError(f"positions {np.asarray(positions).shape} must match title_ids {titles.shape}")
        fz = self.policy.featurizer
        arms, props = np.zeros(len(titles), dtype=np.int64), np.ones(len(titles))
        rows = fz.rows(titles)
        known = rows >= 0
        if known.any():
            context = np.asarray(self.context_fn(np.array([profile_id], dtype=np.int64)), dtype=np.float32)[0]
            kt = titles[known]
            feats = fz.transform(context, kt)
            rng = decision_rng(self.base_seed, profile_id, request_id)
            arms[known], props[known] = self.policy.select_batch(feats, fz.n_arms(kt), rng)
        return arms, props

    @classmethod
    def load(
        cls, tracking_uri: str, name: str = "artwork_policy", alias: str = "champion", context_fn: ContextFn | None = None, base_seed: int = 0
    ) -> "ArtworkSelector":
        """The policy behind ``models:/name@alias``; raises FileNotFoundError when there is none.

        ``context_fn`` maps profile ids to contexts in the policy's ``context_names`` layout
        (e.g. genre affinities from the feature store). Without one every profile gets the
        all-zero context, the average member: artwork is then chosen by theme alone.
        """
        import mlflow

        from bandits.artifact import download_policy

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        try:
            policy, version = download_policy(f"models:/{name}@{alias}")
        except mlflow.exceptions.MlflowException as exc:
            raise FileNotFoundError(f"no artwork policy at models:/{name}@{alias}: {exc}") from None
        if context_fn is None:
            width = policy.featurizer.n_context
            log.warning("artwork selector: no context_fn, serving the average-member context")
            context_fn = lambda ids: np.zeros((len(ids), width), dtype=np.float32)  # noqa: E731
        return cls(policy, context_fn, version, base_seed)


@dataclass(frozen=True)
class ArtworkChoice:
    """What the page gets: arms and propensities (n,), the policy version, and why it fell back."""

    arms: np.ndarray
    propensities: np.ndarray
    policy_version: str
    fallback_reason: str | None = None


def choose_artwork(
    selector: ArtworkSelector | None, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str
) -> ArtworkChoice:
    """The promoted policy's artwork, or every title's default artwork when it is unavailable."""
    default = DefaultArtwork()
    if selector is None:
        return ArtworkChoice(*default.select_page(profile_id, title_ids, positions, request_id), default.version, "no policy loaded")
    try:
        arms, props = selector.select_page(profile_id, title_ids, positions, request_id)
    except Exception as exc:  # noqa: BLE001 - any failure of the policy must not break the page
        log.warning("artwork policy %s failed: %s", selector.version, exc)
        return ArtworkChoice(*default.select_page(profile_id, title_ids, positions, request_id), default.version, f"policy failed: {exc}")
    return ArtworkChoice(arms, props, selector.version)
