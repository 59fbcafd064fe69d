"""Artwork at request time: the champion policy with contexts from the online store, per page.

The nightly job trains the policy on contexts = the profile's genre affinity (one slot per
genre, ``bandits.features.artwork_context_names``); here the same vector is read from the Feast
online store per request and turned into a context by the same function
(``bandits.features.genre_contexts``). Anything missing (no registered policy, no feature repo)
gives ``DefaultArtwork``: every title's default variant with propensity 1, and the response says
so (``artwork_policy: "default"``). ``select_artwork`` maps the policy's arms to each title's
artwork ids for a page of ``CompactRows``.

Impressions are logged by the client: it posts ``artwork_impression`` events with the
``artwork_id``, ``artwork_propensity`` and ``artwork_policy`` of each title it displayed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bandits.features import genre_contexts
from bandits.serving import ArtworkPolicy, ArtworkSelector, ContextFn, DefaultArtwork, choose_artwork
from pathways.config import PathwaysConfig
from pathways.types import ArtworkChoice, CompactRows
from serving.rows import TitleRenderer

log = logging.getLogger(__name__)


def online_context_fn(
    read_affinity: Callable[[int], Any], genres: list[str], context_names: tuple[str, ...]
) -> ContextFn:
    """profile ids (n,) -> contexts (n, len(context_names)); ``read_affinity(profile_id)`` gives the
    profile's genre affinity in ``genres`` order, or None when unknown or the store is down."""

    def context_fn(profile_ids: np.ndarray) -> np.ndarray:
        return genre_contexts([read_affinity(int(pid)) for pid in profile_ids], genres, context_names)

    return context_fn


def genre_context_fn(feature_repo_dir: Path, context_names: tuple[str, ...]) -> ContextFn:
    """``online_context_fn`` over the Feast online store of ``feature_repo_dir``."""
    from features.online import OnlineFeatureClient, OnlineStoreUnavailable

    genres = json.loads((feature_repo_dir / "data" / "genres.json").read_text())
    client = OnlineFeatureClient(feature_repo_dir)

    def read_affinity(profile_id: int) -> Any:
        try:
            return client.profile_features(profile_id).get("genre_affinity")
        except OnlineStoreUnavailable:
            return None  # the average member: the policy still picks by theme

    return online_context_fn(read_affinity, genres, context_names)


def load_artwork_policy(config: PathwaysConfig) -> ArtworkSelector | DefaultArtwork:
    """The champion artwork policy with online contexts, or DefaultArtwork when there is none."""
    try:
        quiet = logging.getLogger("bandits.serving")
        level, quiet.level = quiet.level, logging.ERROR  # it warns about the context_fn given below
        try:
            selector = ArtworkSelector.load(config.mlflow_uri)
        finally:
            quiet.setLevel(level)
        context_fn = genre_context_fn(config.feature_repo_dir, selector.featurizer.context_names)
    except Exception as exc:  # noqa: BLE001 - no policy must never stop serving
        log.warning("artwork: serving default artwork (%s)", exc)
        return DefaultArtwork()
    log.info("artwork: serving policy %s", selector.version)
    return ArtworkSelector(selector.policy, context_fn, selector.version, selector.base_seed)


def select_artwork(
    rows: CompactRows, renderer: TitleRenderer, policy: ArtworkPolicy | None, profile_id: int, request_id: str
) -> ArtworkChoice:
    """``bandits.serving.choose_artwork`` for every title of ``rows``, its arms mapped to each
    title's ``artwork_ids[arm]``; an arm the title does not have (or a propensity outside (0, 1])
    gives that title its default variant with propensity 1."""
    choice = choose_artwork(policy, profile_id, rows.title_ids, rows.positions(), request_id)
    arms, props = choice.arms, choice.propensities
    pos = renderer.positions(rows.title_ids)
    safe = np.maximum(pos, 0)
    valid = (pos >= 0) & (arms >= 0) & (arms < renderer.n_variants[safe]) & (props > 0.0) & (props <= 1.0)
    arms = np.where(valid, arms, 0)
    art = renderer.artwork[safe, np.minimum(arms, renderer.artwork.shape[1] - 1)]
    art = np.where((pos >= 0) & (art >= 0), art, 0)
    return replace(choice, arms=arms, propensities=np.where(valid, props, 1.0), artwork_ids=art.astype(np.int64))


def default_artwork(rows: CompactRows, renderer: TitleRenderer) -> ArtworkChoice:
    """What ``select_artwork`` gives without a policy (every title's first variant, propensity 1),
    from the renderer's precomputed default ids: no policy call, no per-title mapping."""
    n = len(rows.title_ids)
    pos = renderer.positions(rows.title_ids)
    art = np.where(pos >= 0, renderer.default_artwork[np.maximum(pos, 0)], 0).astype(np.int64)
    return ArtworkChoice(np.zeros(n, np.int64), np.ones(n), DefaultArtwork.version, "no policy loaded", art)
