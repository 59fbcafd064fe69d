"""The artwork policy as served: the registry's champion, with contexts from the online store.

The nightly job trains the policy on contexts = the profile's genre affinity (one slot per
genre, named ``genre:<name>``; see ``pipelines/stages.artwork``). Here the same vector is read
from the Feast online store per request. Anything missing (no registered policy, no feature
repo) gives ``DefaultArtwork``: every title's default variant with propensity 1, and the
response says so (``artwork_policy: "default"``).

Impressions are logged by the client: it posts ``artwork_impression`` events with the
``artwork_id``, ``artwork_propensity`` and ``artwork_policy`` of each title it displayed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from bandits.serving import ArtworkSelector, DefaultArtwork
from pathways.config import PathwaysConfig

log = logging.getLogger(__name__)


def genre_context_fn(config: PathwaysConfig, context_names: tuple[str, ...]) -> Any:
    """profile ids (n,) -> (n, len(context_names)) genre affinities from the online store (0 if unknown)."""
    from features.online import OnlineFeatureClient, OnlineStoreUnavailable

    genres = json.loads((config.feature_repo_dir / "data" / "genres.json").read_text())
    slot = {name: i for i, name in enumerate(context_names)}
    cols = np.array([slot.get(f"genre:{g}", -1) for g in genres])
    client = OnlineFeatureClient(config.feature_repo_dir)

    def context_fn(profile_ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(profile_ids), len(context_names)), np.float32)
        for i, pid in enumerate(profile_ids):
            try:
                affinity = client.profile_features(int(pid)).get("genre_affinity")
            except OnlineStoreUnavailable:
                continue  # the average member: the policy still picks by theme
            if affinity is not None and len(affinity) == len(cols):
                keep = cols >= 0
                out[i, cols[keep]] = np.asarray(affinity, np.float32)[keep]
        return out

    return context_fn


def load_artwork_policy(config: PathwaysConfig) -> ArtworkSelector | DefaultArtwork:
    """The champion artwork policy with online contexts, or DefaultArtwork when there is none."""
    try:
        quiet = logging.getLogger("bandits.serving")
        level, quiet.level = quiet.level, logging.ERROR  # it warns about the context_fn given below
        try:
            selector = ArtworkSelector.load(config.mlflow_uri)
        finally:
            quiet.setLevel(level)
        context_fn = genre_context_fn(config, selector.policy.featurizer.context_names)
    except Exception as exc:  # noqa: BLE001 - no policy must never stop serving
        log.warning("artwork: serving default artwork (%s)", exc)
        return DefaultArtwork()
    log.info("artwork: serving policy %s", selector.version)
    return ArtworkSelector(selector.policy, context_fn, selector.version, selector.base_seed)
