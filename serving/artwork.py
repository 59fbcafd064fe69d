"""Artwork at request time: the champion policy with contexts from the online store, per page.

The nightly job trains the policy on contexts = the profile's genre affinity (one slot per
genre, ``bandits.features.artwork_context_names``); here the same vector comes from the Feast
online store, read once per page together with the playback state
(``features.online.OnlineFeatureClient.page_state``), and is turned into a context by the same
function (``bandits.features.genre_contexts``); a caller without those features lets the policy
read them itself (``genre_context_fn``). Anything missing (no registered policy, no feature repo)
gives ``DefaultArtwork``: every title's default variant with propensity 1, and the response says
so (``artwork_policy: "default"``). A loaded champion is followed in the registry
(``RegistryArtwork``, every ``serving.artwork_poll_s``): withdrawn, pages get default artwork
marked degraded (still personalized); a new version is swapped in. ``select_artwork`` maps the
policy's arms to each title's artwork ids for a page of ``CompactRows``.

Impressions are logged by the server from what it chose (``serving.impressions``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bandits.features import genre_contexts
from bandits.serving import ArtworkPolicy, ArtworkSelector, ContextFn, DefaultArtwork, FeaturesContextFn, choose_artwork
from pathways.config import PathwaysConfig
from pathways.types import ArtworkChoice, CompactRows
from serving.rows import TitleRenderer
from serving.stages import run_stage

log = logging.getLogger(__name__)

ARTWORK_POLICY_REMOVED = "artwork policy removed from the registry"


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

    genres = _genres(feature_repo_dir)
    client = OnlineFeatureClient(feature_repo_dir)

    def read_affinity(profile_id: int) -> Any:
        try:
            return client.profile_features(profile_id).get("genre_affinity")
        except OnlineStoreUnavailable:
            return None  # the average member: the policy still picks by theme

    return online_context_fn(read_affinity, genres, context_names)


def features_context_fn(genres: list[str], context_names: tuple[str, ...]) -> FeaturesContextFn:
    """One profile's online features (``features.online.CONTEXT_FIELDS``) -> its context (S,); no
    ``genre_affinity`` (never materialized, or the store was down) gives the average member."""

    def context(features: Mapping[str, Any]) -> np.ndarray:
        return genre_contexts([features.get("genre_affinity")], genres, context_names)[0]

    return context


def _genres(feature_repo_dir: Path) -> list[str]:
    return list(json.loads((feature_repo_dir / "data" / "genres.json").read_text()))


def _champion(config: PathwaysConfig) -> ArtworkSelector:
    """The registered champion with online contexts; raises when there is none or it cannot load."""
    quiet = logging.getLogger("bandits.serving")
    level, quiet.level = quiet.level, logging.ERROR  # it warns about the context_fn given below
    try:
        selector = ArtworkSelector.load(config.mlflow_uri)
    finally:
        quiet.setLevel(level)
    names = selector.featurizer.context_names
    context_fn = genre_context_fn(config.feature_repo_dir, names)
    return ArtworkSelector(selector.policy, context_fn, selector.version, selector.base_seed,
                           features_context_fn(_genres(config.feature_repo_dir), names))


def load_artwork_policy(config: PathwaysConfig) -> RegistryArtwork | DefaultArtwork:
    """The champion artwork policy with online contexts, followed in the registry
    (``RegistryArtwork``), or DefaultArtwork when there is none at start-up."""
    from pathways import tracking

    try:
        registered = _registered_champion(config)
        selector = _champion(config)
    except Exception as exc:  # noqa: BLE001 - no policy must never stop serving
        log.warning("artwork: serving default artwork (%s)", exc)
        return DefaultArtwork()
    log.info("artwork: serving policy %s (registry version %s)", selector.version, registered)
    return RegistryArtwork(selector, registered, lambda: _champion(config),
                           lambda: tracking.alias_version("artwork_policy"), config.serving.artwork_poll_s)


def _registered_champion(config: PathwaysConfig) -> str | None:
    import mlflow

    from pathways import tracking

    mlflow.set_tracking_uri(config.mlflow_uri)
    mlflow.set_registry_uri(config.mlflow_uri)
    return tracking.alias_version("artwork_policy")


class RegistryArtwork:
    """The champion policy as the registry has it now: re-checked every ``poll_s`` seconds.

    The check runs in a background thread (requests only notice the time has come). When the
    champion alias is gone (the policy was withdrawn or removed), ``problem`` says so and pages get
    every title's default artwork, marked degraded, until a champion is back; a new champion
    version is loaded and swapped in; one that fails to load keeps the current policy (logged).
    ``select_page`` raises ``LookupError`` while there is no policy to serve. ``in_process``: its
    choice is one bounded vectorized call in this process, run inline by ``artwork_stage`` (a thread
    hop would cost more than it; a policy without the flag runs in the pool, abandoned at its budget).
    """

    in_process = True

    def __init__(self, selector: ArtworkSelector, registered: str | None, load: Callable[[], ArtworkSelector],
                 champion_version: Callable[[], str | None], poll_s: float, *, background: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._selector: ArtworkSelector | None = selector
        self._registered = registered
        self._load, self._champion_version = load, champion_version
        self.poll_s, self.background, self._clock = poll_s, background, clock
        self._problem: str | None = None
        self._next = clock() + poll_s
        self._checking = threading.Lock()

    @property
    def version(self) -> str:
        selector = self._selector
        return selector.version if selector is not None else DefaultArtwork.version

    @property
    def problem(self) -> str | None:
        """Why no policy is served now (None: one is); starts a registry check when one is due."""
        now = self._clock()
        if now >= self._next and self._checking.acquire(blocking=False):
            self._next = now + self.poll_s
            if self.background:
                threading.Thread(target=self._check, name="artwork-policy-check", daemon=True).start()
            else:
                self._check()
        return self._problem

    def select_page(self, profile_id: int, title_ids: np.ndarray, positions: np.ndarray, request_id: str,
                    profile_features: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        selector = self._selector
        if selector is None:
            raise LookupError(self._problem or ARTWORK_POLICY_REMOVED)
        return selector.select_page(profile_id, title_ids, positions, request_id, profile_features)

    def _check(self) -> None:
        try:
            version = self._champion_version()
            if version is None:
                if self._selector is not None:
                    log.error("artwork: %s; serving default artwork", ARTWORK_POLICY_REMOVED)
                self._selector, self._registered, self._problem = None, None, ARTWORK_POLICY_REMOVED
            elif version != self._registered or self._selector is None:
                selector = self._load()
                self._selector, self._registered, self._problem = selector, version, None
                log.info("artwork: serving policy %s (registry version %s)", selector.version, version)
        except Exception as exc:  # noqa: BLE001 - a registry or load failure keeps what is served
            log.error("artwork: registry check failed, keeping %s: %s", self.version, exc)
        finally:
            self._checking.release()


def select_artwork(
    rows: CompactRows, renderer: TitleRenderer, policy: ArtworkPolicy | None, profile_id: int, request_id: str,
    positions: np.ndarray | None = None, profile_features: Mapping[str, Any] | None = None,
) -> ArtworkChoice:
    """``bandits.serving.choose_artwork`` for every title of ``rows``, its arms mapped to each
    title's ``artwork_ids[arm]``; an arm the title does not have (or a propensity outside (0, 1])
    gives that title its default variant with propensity 1."""
    choice = choose_artwork(policy, profile_id, rows.title_ids, rows.positions(), request_id, profile_features)
    arms, props = choice.arms, choice.propensities
    pos = renderer.positions(rows.title_ids) if positions is None else positions
    safe = np.maximum(pos, 0)
    valid = (pos >= 0) & (arms >= 0) & (arms < renderer.n_variants[safe]) & (props > 0.0) & (props <= 1.0)
    arms = np.where(valid, arms, 0)
    art = renderer.artwork[safe, np.minimum(arms, renderer.artwork.shape[1] - 1)]
    art = np.where((pos >= 0) & (art >= 0), art, 0)
    return replace(choice, arms=arms, propensities=np.where(valid, props, 1.0), artwork_ids=art.astype(np.int64))


def default_artwork(rows: CompactRows, renderer: TitleRenderer, positions: np.ndarray | None = None) -> ArtworkChoice:
    """What ``select_artwork`` gives without a policy (every title's first variant, propensity 1),
    from the renderer's precomputed default ids: no policy call, no per-title mapping. ``positions``:
    ``renderer.positions(rows.title_ids)`` when the caller has them."""
    n = len(rows.title_ids)
    pos = renderer.positions(rows.title_ids) if positions is None else positions
    art = np.where(pos >= 0, renderer.default_artwork[np.maximum(pos, 0)], 0).astype(np.int64)
    return ArtworkChoice(np.zeros(n, np.int64), np.ones(n), DefaultArtwork.version, "no policy loaded", art)


def artwork_stage(policy: ArtworkPolicy | None, pool: ThreadPoolExecutor, rows: CompactRows, renderer: TitleRenderer,
                  profile_id: int, request_id: str, budget_s: float, positions: np.ndarray | None = None,
                  page_read: Future[tuple[Any, Mapping[str, Any] | None]] | None = None) -> tuple[ArtworkChoice, str | None]:
    """The page's artwork and, when it is the default artwork in place of the policy's, why: the
    policy withdrawn from the registry, over ``budget_s`` (run in ``pool``), or failed. No policy
    (or no titles): the default artwork, nothing degraded. ``page_read``: the page's one online
    read (``PlaybackStore.get_with_features``), whose profile features give the context; it is
    awaited within ``budget_s``, and a failed read gives the average member's context."""
    why: str | None = None
    if policy is not None and len(rows.title_ids):
        why = getattr(policy, "problem", None)  # RegistryArtwork: no champion now
        if why is None:
            t0 = time.perf_counter()
            features, why = _page_features(page_read, budget_s)
            left = budget_s - (time.perf_counter() - t0)
            if why is None and left <= 0.0:
                why = _over_budget(budget_s)
            if why is None:
                art, why = run_stage(pool, lambda: select_artwork(rows, renderer, policy, profile_id, request_id,
                                                                  positions, features), left, "artwork",
                                     inline=getattr(policy, "in_process", False))
                if art is not None and art.policy_version == DefaultArtwork.version and art.fallback_reason:
                    why = art.fallback_reason  # the policy failed: choose_artwork gave its default artwork
                if art is not None and why is None:
                    return art, None
            why = why or "artwork failed"
    return default_artwork(rows, renderer, positions), why


def _over_budget(budget_s: float) -> str:
    return f"artwork over budget ({budget_s * 1000.0:.0f} ms)"


def _page_features(read: Future[tuple[Any, Mapping[str, Any] | None]] | None,
                   budget_s: float) -> tuple[Mapping[str, Any] | None, str | None]:
    """(profile features, None) from the page's online read; (None, why) when it overran ``budget_s``;
    no read (or a store without features): None, the policy reads its own context."""
    if read is None:
        return None, None
    try:
        return read.result(timeout=max(budget_s, 0.0))[1], None
    except (FutureTimeout, CancelledError):
        return None, _over_budget(budget_s)
    except Exception:  # noqa: BLE001 - the store is down: the average member's context, as a failed read gives
        return {}, None
