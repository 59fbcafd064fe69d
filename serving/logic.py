"""Serving's plain logic (no Ray, no FastAPI): pages within one deadline, events, health.

``PageService.get_page(profile_id, row_count, request_id)`` builds a page in stages, each within
its budget and the request's deadline (``serving.stages``, budgets in ``ServingConfig``):

1. ``snapshot_read``: the profile's precomputed page (``LoadedSnapshot.page``, the page store);
   over budget or failed, or no page: the fallback ladder (``serving.fallback``: cohort row for
   region and maturity, then global, then catalog) with ``personalized=False`` and the reason;
2. ``overlay``: the real-time playback state (online store), read in parallel with stage 1, in
   the page's ONE online read together with the artwork context's profile features;
   over budget or failed (store down): the precomputed page is still served, rules applied,
   every row marked degraded with the reason (``personalized`` stays true);
3. ``artwork``: the artwork policy (context from that same read); over budget, failed or withdrawn
   from the registry: every title's default artwork, marked degraded;
4. ``serialize``: ``ServedPage.to_json`` (orjson header, pre-encoded title fragments).

A snapshot whose files were removed after it loaded is still served in full (health says so);
with none loaded pages fall back (``snapshot missing``). Title positions: computed once per page.

Overloaded (the HTTP layer says so): the cohort fallback at once, ``reason="overloaded"``, from a
cache of encoded fallback rows. A valid request never raises. ``PathwaysService`` bundles pages,
events and health for the HTTP layer.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from bandits.serving import ArtworkPolicy, DefaultArtwork
from experiments.allocation import assign_cell
from features.schema import KIDS_MAX_MATURITY
from pathways.config import PathwaysConfig
from pathways.types import ArtworkChoice, CompactRows, Page, ProfileContext
from serving import stages
from serving.artwork import artwork_stage, default_artwork
from serving.because import RecentPlaysFn, because_overlay
from serving.events import EventRecorder, build_recorder
from serving.fallback import fallback_rows, fill_rows
from serving.impressions import ImpressionLog
from serving.last_good import LastGoodLoader, pointer_problem
from serving.overlay import enforce_rows, overlay_playback
from serving.playback import OnlineStoreUnavailable, PlaybackStore, PlaybackUpdater
from serving.rows import TitleRenderer
from serving.snapshots import SNAPSHOT_MISSING, LoadedSnapshot, SnapshotStore
from serving.stages import ARTWORK, OVERLAY, SERIALIZE, SNAPSHOT_READ, Deadline, StageTimes, run_stage, wait_stage

log = logging.getLogger(__name__)

ONLINE_STORE_UNAVAILABLE = "online store unavailable"
UNKNOWN_PROFILE = "unknown profile"
OWNERSHIP_UNVERIFIED = "profile records unavailable: ownership not verified"
NO_PAGE = "no personalized page in the snapshot"
OVERLOADED = "overloaded"
PERSONALIZED = "personalized"
ROW_FILLED = "personalized row emptied by the rules: filled from the fallback ladder"


@dataclass(frozen=True)
class ServedPage:
    """A page as served: who for, whether personalized and why not, its rows and artwork.

    ``profile`` is the snapshot's record of the profile (``known=False`` for one never seen, with
    the default region and the kids-safe ceiling); ``cell`` is None when allocation never ran.
    ``reason``: why the page is not the full personalized page (None when it is). ``degraded``:
    (stage, reason) of each stage that degraded every row; ``rows_json``: the rows pre-encoded.
    """

    profile: ProfileContext
    request_id: str
    cell: str | None
    personalized: bool
    reason: str | None
    fallback_rung: str | None
    snapshot: str | None
    rows: CompactRows
    artwork: ArtworkChoice
    renderer: TitleRenderer | None
    degraded: tuple[tuple[str, str], ...] = ()
    rows_json: bytes | None = None
    times: StageTimes = field(default_factory=StageTimes)
    row_rungs: tuple[str, ...] = ()  # per row, when rungs differ (a personalized page filled down the ladder)
    positions: np.ndarray | None = None  # catalog positions of ``rows.title_ids`` (computed once per page)

    @property
    def page(self) -> Page:
        """As a ``pathways.types.Page`` (builds every ``TitleCard``: for tests and offline use)."""
        rows = () if self.renderer is None else self.rows.to_rows(
            self.renderer.catalog, self._artwork_ids(), self.artwork.propensities
        )
        return Page(self.profile.profile_id, self.profile.region, self.profile.max_maturity_level, rows,
                    self.personalized, self.reason, self.cell, self.snapshot, self.fallback_rung)

    @property
    def rung(self) -> str:
        return PERSONALIZED if self.personalized else (self.fallback_rung or "none")

    def degraded_rows(self) -> list[dict[str, str]]:
        """One entry per row that is not a fresh personalized row: its id, rung and why."""
        reasons = [r for _, r in self.degraded] if self.personalized else [self.reason or "", *(r for _, r in self.degraded)]
        rungs = self.row_rungs or (self.rung,) * len(self.rows.headers)
        out = []
        for h, rung in zip(self.rows.headers, rungs):
            why = reasons if rung == self.rung else [*reasons, ROW_FILLED]
            if why:
                out.append({"row_id": h.row_id, "rung": rung, "reason": "; ".join(why)})
        return out

    def header(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "profile": {
                "profile_id": self.profile.profile_id,
                "region": self.profile.region,
                "max_maturity_level": self.profile.max_maturity_level,
                "is_kids": self.profile.is_kids if self.profile.known else None,
            },
            "cell": self.cell,
            "personalized": self.personalized,
            "reason": self.reason,
            "fallback_rung": self.fallback_rung,
            "snapshot": self.snapshot,
            "artwork_policy": self.artwork.policy_version,
            "degraded": self.degraded_rows(),
        }

    def render_rows(self) -> bytes:
        if self.rows_json is not None:
            return self.rows_json
        if self.renderer is None:
            return b"[]"
        return self.renderer.rows_json(self.rows, self._artwork_ids(), self.artwork.propensities, self.positions)

    def to_json(self) -> bytes:
        """The response body: the header fields, then ``rows`` (rendered without building objects)."""
        t0 = time.perf_counter()
        rows = self.render_rows()
        head = orjson.dumps(self.header())
        body = b"".join((memoryview(head)[:-1], b',"rows":', rows, b"}"))
        self.times.add(SERIALIZE, t0)
        return body

    def to_dict(self) -> dict[str, Any]:
        return dict(orjson.loads(self.to_json()))

    def _artwork_ids(self) -> np.ndarray:
        ids = self.artwork.artwork_ids
        return ids if ids is not None else np.zeros(len(self.rows.title_ids), np.int64)


class PageService:
    """Home pages from the live snapshot, the playback store and an artwork policy."""

    def __init__(
        self,
        config: PathwaysConfig,
        snapshots: SnapshotStore,
        playback: PlaybackStore,
        artwork: ArtworkPolicy | None = None,
        impressions: ImpressionLog | None = None,
    ) -> None:
        self.config = config
        self.snapshots = snapshots
        self.playback = playback
        self.artwork = None if isinstance(artwork, DefaultArtwork) else artwork  # default: no stage to run
        self.impressions = impressions
        self.recent_plays: RecentPlaysFn | None = None  # streamed plays per profile: the BYW row (serving.because)
        self._pool = stages.StagePool(max_workers=2 * config.serving.max_ongoing_requests, thread_name_prefix="stage")
        self._warned: dict[str, float] = {}
        self._fallback_cache: OrderedDict[tuple[Any, ...], tuple[CompactRows, str, bytes]] = OrderedDict()

    def profile_context(self, snapshot: LoadedSnapshot | None, profile_id: int) -> ProfileContext:
        """The snapshot's record of ``profile_id``, or the default region and the kids-safe ceiling."""
        record = snapshot.profile(profile_id) if snapshot is not None else None
        return record if record is not None else self._unknown(profile_id)

    def account_of(self, profile_id: int) -> int | None:
        """The account of ``profile_id`` per the live snapshot (None: profile unknown); raises
        ``PageStoreUnavailable`` when the snapshot's profile records cannot be read now."""
        snapshot = self.snapshots.state().snapshot
        record = snapshot.profile_strict(profile_id) if snapshot is not None else None
        return record.account_id if record is not None else None

    def _unknown(self, profile_id: int) -> ProfileContext:
        return ProfileContext(profile_id, self.config.serving.default_region, KIDS_MAX_MATURITY, known=False)

    def get_page(self, profile_id: int, row_count: int | None = None, request_id: str | None = None,
                 *, overloaded: bool = False, anonymous: bool = False) -> ServedPage:
        """The page for ``profile_id`` (see the module docstring). Raises ValueError only for bad arguments.
        ``anonymous``: the caller's right to this profile could not be checked (its records are
        unreadable): the kids-safe page of the default region, nothing read of the profile."""
        cfg = self.config.serving
        row_count = cfg.default_row_count if row_count is None else int(row_count)
        if not 1 <= row_count <= cfg.max_row_count:
            raise ValueError(f"row_count must be in 1..{cfg.max_row_count}, got {row_count}")
        request_id = request_id or uuid.uuid4().hex
        deadline, times = Deadline(cfg.deadline_ms), StageTimes()
        profile = self._unknown(profile_id)
        cell: str | None = None
        try:
            state = self.snapshots.state()
            snapshot = state.snapshot
            cell = assign_cell(profile_id, self.config.experiment)
            if anonymous:
                profile = replace(profile, cell=cell)
                return self._fallback(snapshot, profile, request_id, row_count, OWNERSHIP_UNVERIFIED, times, None, deadline)
            profile = replace(self.profile_context(snapshot, profile_id), cell=cell)
            if overloaded:
                return self._fallback(snapshot, profile, request_id, row_count, OVERLOADED, times, None, deadline)
            if snapshot is None:  # files removed under a loaded snapshot: it is served in full (SNAPSHOT_DETACHED)
                return self._fallback(snapshot, profile, request_id, row_count, SNAPSHOT_MISSING, times, None, deadline)
            playback = self._pool.start(self.playback.get_with_features, profile_id, getattr(self.playback, "bounded_reads", False))
            if not profile.known:
                return self._fallback(snapshot, profile, request_id, row_count, UNKNOWN_PROFILE, times, playback, deadline)
            t0 = time.perf_counter()
            stored, why = self._read_page(snapshot, profile_id, deadline)
            times.add(SNAPSHOT_READ, t0)
            if stored is None:
                if why is None:
                    return self._fallback(snapshot, profile, request_id, row_count, NO_PAGE, times, playback, deadline)
                playback.cancel()
                return self._fallback(snapshot, profile, request_id, row_count, why, times, None, deadline)
            if stored.cell != cell:  # serving another cell's page would contaminate the experiment
                playback.cancel()
                why = f"page built for cell {stored.cell!r}, profile is in cell {cell!r}"
                return self._fallback(snapshot, profile, request_id, row_count, why, times, None, deadline)
            return self._personalized(snapshot, profile, stored.rows, request_id, row_count, times, playback, deadline)
        except Exception as exc:  # noqa: BLE001 - last resort: a valid request never gets a 5xx
            log.exception("serving profile %s failed; empty page", profile_id)
            return ServedPage(profile, request_id, cell, False, f"internal error: {type(exc).__name__}", "none",
                              None, CompactRows.empty(), _NO_ARTWORK, None, times=times)

    def _warn(self, reason: str, what: str) -> None:
        """Log a degradation at most once per ``degraded_log_every_s`` per reason (metrics count every page)."""
        now = time.monotonic()
        every = self.config.serving.degraded_log_every_s
        if now - self._warned.get(reason, -every) >= every:
            self._warned[reason] = now
            log.warning("%s: %s (logged at most every %.0f s; see pathways_pages_total)", reason, what, every)

    def _read_page(self, snapshot: LoadedSnapshot, profile_id: int, deadline: Deadline) -> tuple[Any, str | None]:
        """The stored page within the snapshot-read budget: a remote page store (Redis) is read in the
        worker pool and abandoned at the budget; a local one (SQLite file, memory) is read inline,
        where a thread hop would cost more than the read."""
        budget_s = deadline.budget_s(self.config.serving.snapshot_read_budget_ms)
        if (snapshot.manifest.get("page_store") or {}).get("backend") == "redis":
            return run_stage(self._pool, lambda: snapshot.page(profile_id), budget_s, "snapshot read")
        try:
            return snapshot.page(profile_id), None
        except Exception as exc:  # noqa: BLE001 - an unreadable page degrades to the fallback ladder
            return None, f"snapshot read failed: {type(exc).__name__}"

    def _personalized(self, snapshot: LoadedSnapshot, profile: ProfileContext, stored: CompactRows, request_id: str,
                      row_count: int, times: StageTimes, playback: Any, deadline: Deadline) -> ServedPage:
        cfg, page = self.config.serving, self.config.page
        degraded: list[tuple[str, str]] = []
        t0 = time.perf_counter()
        got, why = wait_stage(playback, deadline.budget_s(cfg.personalize_budget_ms), "real-time overlay",
                              known={OnlineStoreUnavailable: ONLINE_STORE_UNAVAILABLE})
        state = got[0] if got is not None else None
        stored = because_overlay(stored, snapshot, profile, self.recent_plays, state, page.row_length)
        if state is None:
            self._warn(why or "real-time overlay failed", "serving precomputed pages without the real-time overlay")
            degraded.append((OVERLAY, why or "real-time overlay failed"))
            rows = enforce_rows(stored, snapshot.catalog, profile, dedupe_top_rows=page.dedupe_top_rows, row_count=row_count)
        else:
            rows = overlay_playback(stored, state, snapshot.catalog, profile, row_length=page.row_length,
                                    dedupe_top_rows=page.dedupe_top_rows, row_count=row_count)
        rungs: tuple[str, ...] = ()
        if len(rows.headers) < min(row_count, len(stored.headers)):  # rows emptied by the rules: down the ladder
            finished = state.finished if state is not None else frozenset()
            ladder, rung = fallback_rows(snapshot, replace(profile, finished=finished), row_count=row_count,
                                         row_length=page.row_length, dedupe_top_rows=page.dedupe_top_rows)
            own = len(rows.headers)
            rows, filled = fill_rows(rows, ladder, snapshot.catalog, replace(profile, finished=finished),
                                     row_count=row_count, dedupe_top_rows=page.dedupe_top_rows)
            rungs = (PERSONALIZED,) * own + (rung,) * filled if filled else ()
        times.add(OVERLAY, t0)
        pos = snapshot.renderer.positions(rows.title_ids)  # once per page: artwork and rendering share them
        art = self._artwork(rows, snapshot.renderer, profile.profile_id, request_id, deadline, times, degraded, pos,
                            playback)
        reason = "; ".join(r for _, r in degraded) or None
        return ServedPage(profile, request_id, profile.cell, True, reason, None, snapshot.version, rows, art,
                          snapshot.renderer, tuple(degraded), times=times, row_rungs=rungs, positions=pos)

    def _artwork(self, rows: CompactRows, renderer: TitleRenderer, profile_id: int, request_id: str, deadline: Deadline,
                 times: StageTimes, degraded: list[tuple[str, str]], pos: np.ndarray | None, page_read: Any) -> ArtworkChoice:
        """The policy's artwork within the artwork budget (context: the features of ``page_read``, the
        page's online read); else the default artwork, marked degraded."""
        t0 = time.perf_counter()
        art, why = artwork_stage(self.artwork, self._pool, rows, renderer, profile_id, request_id,
                                 deadline.budget_s(self.config.serving.artwork_budget_ms), pos, page_read)
        if why is not None:
            degraded.append((ARTWORK, why))
        elif self.impressions is not None and self.artwork is not None and len(rows.title_ids):
            self.impressions.log(rows, art, profile_id, request_id)
        times.add(ARTWORK, t0)
        return art

    def _fallback(self, snapshot: LoadedSnapshot | None, profile: ProfileContext, request_id: str, row_count: int,
                  reason: str, times: StageTimes, playback: Any, deadline: Deadline) -> ServedPage:
        """The fallback ladder for ``profile``; finished titles from ``playback`` when it answers in time."""
        cfg = self.config
        finished: frozenset[int] = frozenset()
        if playback is not None:
            t0 = time.perf_counter()
            got, _ = wait_stage(playback, deadline.budget_s(cfg.serving.personalize_budget_ms), "real-time overlay")
            finished = got[0].finished if got is not None else frozenset()
            times.add(OVERLAY, t0)
        version = snapshot.version if snapshot is not None else None
        renderer = snapshot.renderer if snapshot is not None else None
        use_policy = self.artwork is not None and reason != OVERLOADED
        key = (version, profile.region, profile.max_maturity_level, row_count)
        cached = self._fallback_cache.get(key) if not finished else None
        if cached is None:
            rows, rung = fallback_rows(snapshot, replace(profile, finished=finished), row_count=row_count,
                                       row_length=cfg.page.row_length, dedupe_top_rows=cfg.page.dedupe_top_rows)
            encoded = b"[]"
            if renderer is not None:
                default_art = default_artwork(rows, renderer)
                encoded = renderer.rows_json(rows, default_art.artwork_ids, default_art.propensities)  # type: ignore[arg-type]
            cached = (rows, rung, encoded)
            if not finished:
                self._fallback_cache[key] = cached
                while len(self._fallback_cache) > self.config.serving.fallback_cache_pages:
                    self._fallback_cache.popitem(last=False)
        rows, rung, encoded = cached
        degraded: list[tuple[str, str]] = []
        if use_policy and renderer is not None:
            art = self._artwork(rows, renderer, profile.profile_id, request_id, deadline, times, degraded, None, playback)
            encoded_rows = None
        else:
            art = default_artwork(rows, renderer) if renderer else _NO_ARTWORK
            encoded_rows = encoded
        return ServedPage(profile, request_id, profile.cell, False, reason, rung, version, rows, art, renderer,
                          tuple(degraded), encoded_rows, times)


_NO_ARTWORK = ArtworkChoice(np.zeros(0, np.int64), np.zeros(0), "default", "no catalog", np.zeros(0, np.int64))


@dataclass
class PathwaysService:
    """Everything the HTTP layer calls."""

    pages: PageService
    events: EventRecorder

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 ``ok`` or ``degraded`` (still serving something useful), 503
        ``unavailable`` while no snapshot is loaded or the loaded one holds no page at all."""
        state = self.pages.snapshots.state()
        snapshot = state.snapshot
        try:
            online = bool(self.pages.playback.ping())
        except Exception:  # noqa: BLE001 - health must answer
            online = False
        pointer = pointer_problem(self.pages.snapshots.root, snapshot)
        problems = [p for p in (state.problem, pointer, None if online else ONLINE_STORE_UNAVAILABLE) if p]
        pages = len(snapshot.pages) if snapshot is not None else 0
        fallbacks = len(snapshot.fallbacks) if snapshot is not None else 0
        if snapshot is not None and pages == 0:
            problems.append("the snapshot holds no personalized page")
        status = "ok" if not problems else "degraded"
        if snapshot is None or (pages == 0 and fallbacks == 0):
            status = "unavailable"
        body = {"status": status, "snapshot": snapshot.version if snapshot else None,
                "snapshot_problem": state.problem, "online_store": online, "problems": problems,
                "pages": pages, "fallback_pages": fallbacks}
        return (503 if status == "unavailable" else 200), body


def build_service(
    config: PathwaysConfig,
    playback: PlaybackStore | None = None,
    artwork: ArtworkPolicy | None = None,
    *,
    background_reload: bool = True,
) -> PathwaysService:
    """The service over ``config.data_dir``: snapshots, the Feast online store unless ``playback``
    is given, events into ``open_stream(config)``. The first snapshot is loaded before returning."""
    from serving.playback import OnlinePlaybackStore

    live: list[SnapshotStore] = []
    loader = LastGoodLoader(lambda: bool(live) and live[0].version is not None)
    snapshots = SnapshotStore(config.snapshots_dir, config.serving.snapshot_poll_s, background=background_reload, loader=loader,
                              standby=config.serving.rollback_standby)
    live.append(snapshots)
    snapshots.refresh()
    playback = playback if playback is not None else OnlinePlaybackStore(
        config.feature_repo_dir, read_timeout_s=min(config.serving.personalize_budget_ms, config.serving.deadline_ms) / 1e3)
    try:
        playback.ping()  # connects now (Feast takes seconds the first time), not on the first page
    except Exception:  # noqa: BLE001 - a store that is down at start-up only costs the overlay
        log.warning("the online store does not answer at start-up; pages go without the real-time overlay")
    updater = PlaybackUpdater(playback, config.candidates.finished_fraction, config.candidates.continue_min_fraction)
    events = build_recorder(config, updater, lambda: snapshots.state().snapshot)
    pages = PageService(config, snapshots, playback, artwork, ImpressionLog.for_config(config))
    pages.recent_plays = events.seeds.get if events.seeds is not None else None
    return PathwaysService(pages, events)
