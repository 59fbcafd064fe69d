"""Serving's plain logic (no Ray, no FastAPI): pages, events, heartbeats and health.

``PageService.get_page(profile_id, row_count, request_id)`` serves the live snapshot's page for a
known profile with the real-time playback overlay, inside ``personalize_budget_ms``; anything
that stops it (unknown profile, snapshot missing, online store down, an exception, the budget)
gives the fallback page (``serving.fallback``) with ``personalized=False`` and the reason.
It never raises for a valid request. ``EventRecorder`` lands events durably, then folds them
into the playback state. ``PathwaysService`` bundles both for the HTTP layer.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.allocation import assign_cell
from features.history import PlaybackState
from features.schema import KIDS_MAX_MATURITY
from pathways.config import PathwaysConfig
from pathways.types import Page
from serving.events import EventIn, EventLanding, HeartbeatIn
from serving.fallback import fallback_rows
from serving.overlay import ArtworkChoice, ArtworkPolicy, overlay_playback, select_artwork
from serving.playback import OnlineStoreUnavailable, PlaybackStore, PlaybackUpdater
from serving.rows import PageRows, TitleRenderer
from serving.snapshots import SNAPSHOT_MISSING, LoadedSnapshot, SnapshotStore

log = logging.getLogger(__name__)

ONLINE_STORE_UNAVAILABLE = "online store unavailable"
UNKNOWN_PROFILE = "unknown profile"
NO_PAGE = "no personalized page in the snapshot"


@dataclass(frozen=True)
class ProfileInfo:
    """Who the page is for; ``is_kids`` is None for a profile never seen."""

    profile_id: int
    region: str
    max_maturity_level: int
    is_kids: bool | None
    known: bool


@dataclass(frozen=True)
class ServedPage:
    """A page as served: who for, whether personalized and why not, its rows and artwork."""

    profile: ProfileInfo
    request_id: str
    cell: str | None
    personalized: bool
    reason: str | None
    fallback_rung: str | None
    snapshot: str | None
    rows: PageRows
    artwork: ArtworkChoice
    renderer: TitleRenderer | None

    @property
    def page(self) -> Page:
        """As a ``pathways.types.Page`` (builds every ``TitleCard``: for tests and offline use)."""
        rows = () if self.renderer is None else self.rows.to_rows(
            self.renderer.catalog, self.artwork.artwork_ids, self.artwork.propensities
        )
        return Page(self.profile.profile_id, self.profile.region, self.profile.max_maturity_level, rows,
                    self.personalized, self.reason, self.cell, self.snapshot, self.fallback_rung)

    def header(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "profile": {
                "profile_id": self.profile.profile_id,
                "region": self.profile.region,
                "max_maturity_level": self.profile.max_maturity_level,
                "is_kids": self.profile.is_kids,
            },
            "cell": self.cell,
            "personalized": self.personalized,
            "reason": self.reason,
            "fallback_rung": self.fallback_rung,
            "snapshot": self.snapshot,
            "artwork_policy": self.artwork.policy_version,
        }

    def to_json(self) -> bytes:
        """The response body: the header fields, then ``rows`` (rendered without building objects)."""
        rows = "[]" if self.renderer is None else self.renderer.rows_json(
            self.rows, self.artwork.artwork_ids, self.artwork.propensities
        )
        head = json.dumps(self.header(), separators=(",", ":"))
        return f'{head[:-1]},"rows":{rows}}}'.encode()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())


class PageService:
    """Home pages from the live snapshot, the playback store and an artwork policy."""

    def __init__(
        self,
        config: PathwaysConfig,
        snapshots: SnapshotStore,
        playback: PlaybackStore,
        artwork: ArtworkPolicy | None = None,
    ) -> None:
        self.config = config
        self.snapshots = snapshots
        self.playback = playback
        self.artwork = artwork
        self._pool = ThreadPoolExecutor(max_workers=config.serving.max_ongoing_requests, thread_name_prefix="personalize")

    def profile_info(self, snapshot: LoadedSnapshot | None, profile_id: int) -> ProfileInfo:
        record = snapshot.profiles.get(profile_id) if snapshot is not None else None
        if record is None:  # never seen: the default region and the kids-safe ceiling
            return ProfileInfo(profile_id, self.config.serving.default_region, KIDS_MAX_MATURITY, None, False)
        return ProfileInfo(profile_id, record.region, record.max_maturity_level, record.is_kids, True)

    def get_page(self, profile_id: int, row_count: int | None = None, request_id: str | None = None) -> ServedPage:
        """The page for ``profile_id`` (see the module docstring). Raises ValueError only for bad arguments."""
        cfg = self.config.serving
        row_count = cfg.default_row_count if row_count is None else int(row_count)
        if not 1 <= row_count <= cfg.max_row_count:
            raise ValueError(f"row_count must be in 1..{cfg.max_row_count}, got {row_count}")
        request_id = request_id or uuid.uuid4().hex
        profile = ProfileInfo(profile_id, cfg.default_region, KIDS_MAX_MATURITY, None, False)
        cell: str | None = None
        try:
            state = self.snapshots.state()
            snapshot = state.snapshot
            profile = self.profile_info(snapshot, profile_id)
            cell = assign_cell(profile_id, self.config.experiment)
            rows, reason, rung = None, state.problem, None
            if reason is None and snapshot is not None:
                reason = self._why_not_personalized(snapshot, profile, cell)
                if reason is None:
                    rows, reason = self._personalize_within_budget(snapshot, profile, row_count)
            personalized = rows is not None
            if rows is None:
                reason = reason or SNAPSHOT_MISSING
                finished = self._finished_titles(profile_id) if reason in _STORE_STILL_USABLE else frozenset()
                rows, rung = fallback_rows(
                    snapshot, profile.region, profile.max_maturity_level, finished, row_count=row_count,
                    row_length=self.config.page.row_length, dedupe_top_rows=self.config.page.dedupe_top_rows,
                )
            renderer = snapshot.renderer if snapshot is not None else None
            art = select_artwork(rows, renderer, self.artwork, profile_id, request_id) if renderer else _NO_ARTWORK
            return ServedPage(profile, request_id, cell, personalized, reason, rung,
                              snapshot.version if snapshot else None, rows, art, renderer)
        except Exception as exc:  # noqa: BLE001 - last resort: a valid request never gets a 5xx
            log.exception("serving profile %s failed; empty page", profile_id)
            return ServedPage(profile, request_id, cell, False, f"internal error: {type(exc).__name__}", "none",
                              None, PageRows.empty(), _NO_ARTWORK, None)

    def _finished_titles(self, profile_id: int) -> frozenset[int]:
        """Titles ``profile_id`` finished per the playback store, within the budget; empty if it fails."""
        future = self._pool.submit(self.playback.get, profile_id)
        try:
            return future.result(timeout=self.config.serving.personalize_budget_ms / 1000.0).finished
        except Exception:  # noqa: BLE001 - the fallback page must not depend on the store
            future.cancel()
            return frozenset()

    def _why_not_personalized(self, snapshot: LoadedSnapshot, profile: ProfileInfo, cell: str) -> str | None:
        if not profile.known:
            return UNKNOWN_PROFILE
        stored = snapshot.pages.get(profile.profile_id)
        if stored is None:
            return NO_PAGE
        if stored[0] != cell:  # serving another cell's page would contaminate the experiment
            return f"page built for cell {stored[0]!r}, profile is in cell {cell!r}"
        return None

    def _personalize_within_budget(
        self, snapshot: LoadedSnapshot, profile: ProfileInfo, row_count: int
    ) -> tuple[PageRows | None, str | None]:
        budget_ms = self.config.serving.personalize_budget_ms
        future = self._pool.submit(self._personalize, snapshot, profile, row_count)
        try:
            return future.result(timeout=budget_ms / 1000.0), None
        except FutureTimeout:
            future.cancel()
            log.warning("personalization of profile %s over budget (%.0f ms)", profile.profile_id, budget_ms)
            return None, f"personalization over budget ({budget_ms:g} ms)"
        except OnlineStoreUnavailable as exc:
            log.warning("online store unavailable: %s", exc)
            return None, ONLINE_STORE_UNAVAILABLE
        except Exception as exc:  # noqa: BLE001 - any failure of personalization -> fallback
            log.exception("personalization of profile %s failed", profile.profile_id)
            return None, f"personalization failed: {type(exc).__name__}"

    def _personalize(self, snapshot: LoadedSnapshot, profile: ProfileInfo, row_count: int) -> PageRows:
        state = self.playback.get(profile.profile_id)
        return overlay_playback(
            snapshot.pages[profile.profile_id][1], state, snapshot.catalog, profile.region, profile.max_maturity_level,
            row_length=self.config.page.row_length, dedupe_top_rows=self.config.page.dedupe_top_rows, row_count=row_count,
        )


# Fallback reasons after which the playback store may still be asked for finished titles.
_STORE_STILL_USABLE = frozenset({UNKNOWN_PROFILE, NO_PAGE})
_NO_ARTWORK = ArtworkChoice(np.zeros(0, np.int64), np.zeros(0), "default", "no catalog")


@dataclass(frozen=True)
class RecordResult:
    """What happened to posted events: how many landed (and where), how many profiles' state moved."""

    accepted: int
    file: str
    states: dict[int, PlaybackState]  # profile id -> its state after the events (updated ones only)
    state_error: str | None = None


class EventRecorder:
    """Lands events durably in ``landing``, then applies them to the playback state."""

    def __init__(self, landing: EventLanding, updater: PlaybackUpdater, snapshots: SnapshotStore) -> None:
        self.landing = landing
        self.updater = updater
        self.snapshots = snapshots

    def record(self, rows: list[dict[str, Any]]) -> RecordResult:
        """Land ``rows`` (EVENT_SCHEMA dicts) first (OSError propagates: nothing accepted), then update state."""
        path = self.landing.append(rows)
        snapshot = self.snapshots.state().snapshot
        runtime = snapshot.runtime_s if snapshot is not None else {}
        by_profile: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_profile[int(row["profile_id"])].append(row)
        states: dict[int, PlaybackState] = {}
        error = None
        for pid, events in by_profile.items():
            try:
                states[pid] = self.updater.apply(pid, events, runtime)
            except OnlineStoreUnavailable as exc:
                log.warning("playback state of profile %s not updated: %s", pid, exc)
                error = ONLINE_STORE_UNAVAILABLE
        return RecordResult(len(rows), path.name, states, error)

    def record_events(self, events: list[EventIn]) -> RecordResult:
        return self.record([e.to_row() for e in events])

    def heartbeat(self, session_id: str, beat: HeartbeatIn) -> RecordResult:
        return self.record(beat.to_rows(session_id))


@dataclass
class PathwaysService:
    """Everything the HTTP layer calls."""

    pages: PageService
    events: EventRecorder

    def health(self) -> dict[str, Any]:
        state = self.pages.snapshots.state()
        try:
            online = bool(self.pages.playback.ping())
        except Exception:  # noqa: BLE001 - health must answer
            online = False
        return {"status": "ok", "snapshot": state.snapshot.version if state.snapshot else None,
                "snapshot_problem": state.problem, "online_store": online}


def build_service(
    config: PathwaysConfig,
    playback: PlaybackStore | None = None,
    artwork: ArtworkPolicy | None = None,
    *,
    background_reload: bool = True,
) -> PathwaysService:
    """The service over ``config.data_dir``: snapshots, the Feast online store unless ``playback``
    is given, landing under ``data_dir/raw/api``. The first snapshot is loaded before returning."""
    from serving.playback import OnlinePlaybackStore

    snapshots = SnapshotStore(config.snapshots_dir, config.serving.snapshot_poll_s, background=background_reload)
    snapshots.refresh()
    playback = playback if playback is not None else OnlinePlaybackStore(config.feature_repo_dir)
    updater = PlaybackUpdater(playback, config.candidates.finished_fraction, config.candidates.continue_min_fraction)
    pages = PageService(config, snapshots, playback, artwork)
    events = EventRecorder(EventLanding(config.raw_dir / "api"), updater, snapshots)
    return PathwaysService(pages, events)
