"""Artwork at serving time: one variant per title on the page, with its propensity for the log.

``ArtworkSelector`` wraps the promoted policy. Its exploration is replayable: the generator for a
page is ``decision_rng(base_seed, profile_id, request_id)``, so the same request gets the same
artwork. Titles the policy's featurizer does not know get their default artwork (arm 0,
propensity 1). A page is one policy call over its titles' distinct arm layouts
(``ArmFeaturizer.layouts``: all titles whose arms share codes share one distribution), then one
draw per title from exactly that distribution: the logged propensity is the probability the arm had.
The context is ``context_fn`` of the profile, or, when the caller already read the profile's online
features (one read per page, with the playback state), ``features_context`` of them.
``choose_artwork`` is the explicit fallback step: no policy, or a policy that fails or answers
with arrays of the wrong shape, gives ``DefaultArtwork`` for the page and says why
(``pathways.types.ArtworkChoice``, the one type serving and the event log share).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bandits.rng import decision_rng
from pathways.types import ArtworkChoice

if TYPE_CHECKING:
    from bandits.features import ArmFeaturizer
    from bandits.policies import Policy

log = logging.getLogger(__name__)
ContextFn = Callable[[np.ndarray], np.ndarray]  # profile ids (n,) -> context (n, S)
FeaturesContextFn = Callable[[Mapping[str, Any]], np.ndarray]  # one profile's online features -> context (S,)


class ArtworkPolicy(Protocol):
    """What serves artwork for a page (``ArtworkSelector``, ``DefaultArtwork``): arms and propensities (n,)."""

    @property
    def version(self) -> str: ...

    def select_page(
        self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str,
        profile_features: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class DefaultArtwork:
    """The fallback: every title's default artwork (variant 0), chosen with certainty."""

    version: str = "default"

    def select_page(self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str,
                    profile_features: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(np.asarray(title_ids))
        return np.zeros(n, dtype=np.int64), np.ones(n)


@dataclass(frozen=True)
class ArtworkSelector:
    """A policy (with its featurizer), where contexts come from, and the exploration base seed."""

    policy: Policy
    context_fn: ContextFn
    version: str
    base_seed: int = 0
    features_context: FeaturesContextFn | None = None

    @property
    def featurizer(self) -> ArmFeaturizer:
        """The policy's arm layout; a policy without one cannot serve (ValueError)."""
        return _featurizer(self.policy)

    def context(self, profile_id: int, profile_features: Mapping[str, Any] | None = None) -> np.ndarray:
        """The profile's context (S,): from ``profile_features`` when given and this selector maps
        features to contexts, else ``context_fn``."""
        if profile_features is not None and self.features_context is not None:
            return np.asarray(self.features_context(profile_features), dtype=np.float32)
        return np.asarray(self.context_fn(np.array([profile_id], dtype=np.int64)), dtype=np.float32)[0]

    def select_page(self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str,
                    profile_features: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Arms int64 (n,) and propensities (n,) for the page's titles (any order, e.g. 40 x 40 flattened).

        ``positions`` (n,) are where each title sits; the policy's choice does not depend on them
        but they are checked so the caller logs the same rounds it served. The distribution is
        ``policy.probabilities`` of each distinct arm layout on the page (one call), and each
        title's arm is drawn from its layout's row with ``decision_rng`` (``bandits.policies.draw_grouped``).
        """
        from bandits.policies import draw_grouped

        titles = np.asarray(title_ids, dtype=np.int64)
        if np.asarray(positions).shape != titles.shape:
            raise ValueError(f"positions {np.asarray(positions).shape} must match title_ids {titles.shape}")
        fz = self.featurizer
        arms, props = np.zeros(len(titles), dtype=np.int64), np.ones(len(titles))
        rows = fz.rows(titles)
        known = rows >= 0
        if known.any():
            code_features = fz.code_features(self.context(profile_id, profile_features))
            layout_of, layout_codes, layout_arms = fz.layouts
            used, inverse = np.unique(layout_of[rows[known]], return_inverse=True)
            rng = decision_rng(self.base_seed, profile_id, request_id)
            probs = self.policy.probabilities(code_features[layout_codes[used]], layout_arms[used], rng)
            arms[known], props[known] = draw_grouped(probs, inverse.reshape(-1), rng)
        return arms, props

    @classmethod
    def load(
        cls, tracking_uri: str, name: str = "artwork_policy", alias: str = "champion", context_fn: ContextFn | None = None, base_seed: int = 0
    ) -> ArtworkSelector:
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
            width = _featurizer(policy).n_context
            log.warning("artwork selector: no context_fn, serving the average-member context")
            context_fn = lambda ids: np.zeros((len(ids), width), dtype=np.float32)  # noqa: E731
        return cls(policy, context_fn, version, base_seed)


def _featurizer(policy: Policy) -> ArmFeaturizer:
    if policy.featurizer is None:
        raise ValueError(f"artwork policy {type(policy).__name__} has no featurizer: it was never fitted")
    return policy.featurizer


def choose_artwork(
    policy: ArtworkPolicy | None, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str,
    profile_features: Mapping[str, Any] | None = None,
) -> ArtworkChoice:
    """The policy's artwork (arms int64, propensities float64, (n,)), or every title's default
    artwork when there is no policy or it fails; a page without titles never asks the policy.
    ``profile_features``: the profile's online features when the caller read them (see ``ArtworkSelector``)."""
    default = DefaultArtwork()
    if policy is None:
        return ArtworkChoice(*default.select_page(profile_id, title_ids, positions, request_id), default.version, "no policy loaded")
    n = len(np.asarray(title_ids))
    if n == 0:
        return ArtworkChoice(np.zeros(0, np.int64), np.zeros(0), policy.version)
    try:
        arms, props = policy.select_page(profile_id, title_ids, positions, request_id, profile_features)
        arms, props = np.asarray(arms, np.int64), np.asarray(props, np.float64)
        if arms.shape != (n,) or props.shape != (n,):
            raise ValueError(f"policy returned shapes {arms.shape}, {props.shape} for {n} titles")
    except Exception as exc:  # noqa: BLE001 - any failure of the policy must not break the page
        log.warning("artwork policy %s failed: %s", policy.version, exc)
        return ArtworkChoice(*default.select_page(profile_id, title_ids, positions, request_id), default.version, f"policy failed: {exc}")
    return ArtworkChoice(arms, props, policy.version)
