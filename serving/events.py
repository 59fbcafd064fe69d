"""Events arriving over HTTP: request models, per-event checks, and the append to the event stream.

``EventIn`` mirrors ``features.schema.EVENT_SCHEMA`` (unknown fields are an error; ``event_id``
and ``ts`` may be left out: the server assigns them and returns the id). ``HeartbeatIn`` is the
body of ``PUT /api/v1/playback/{session_id}/heartbeat``.

``EventRecorder.record(rows)``:

1. checks each event as ingest would (``features.ingest.validate_events``: timestamps, known
   profile and title from the live snapshot, types); a failing event is ``rejected`` with its
   reason and not appended;
2. appends the others to the event stream (``features.stream``) and returns once the stream has
   them; an id the stream already has comes back ``duplicate`` (a retried request counts once);
   a full stream or a down broker raises ``StreamUnavailable`` (the API answers 503 with
   ``Retry-After``), nothing is silently dropped;
3. with ``stream.realtime = "inline"``, runs the real-time consumer group up to the events just
   appended (``features.stream.realtime``: playback state through ``PlaybackUpdater``, and the
   "Because you watched" seed), so the next page shows them. A failed state write is reported
   (``state_updated: false``) and retried by the next request; the events are in the stream.

The lake consumer (``python -m features.stream lake``) lands the stream in the lake. Artwork
impressions the server logs go to their own stream (``serving.impressions``), which the real-time
consumer never reads.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.history import PlaybackState
from features.ingest import validate_events
from features.online import OnlineStoreUnavailable
from features.schema import EVENT_SCHEMA, EventType
from features.stream import EventStream, open_stream
from features.stream.realtime import RealtimeConsumer, RecentPlays
from pathways.config import PathwaysConfig
from pathways.snapshot import TITLES

log = logging.getLogger(__name__)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
ONLINE_STORE_UNAVAILABLE = "online store unavailable"
# Rules that need the catalog: not checked while no snapshot is loaded (the lake consumer checks them).
CATALOG_RULES = frozenset({"unknown_profile_id", "unknown_title_id", "unknown_artwork_id"})


def _utc(ts: datetime | None) -> datetime:
    if ts is None:
        return datetime.now(UTC)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class EventIn(BaseModel):
    """One event as posted by a client; field meanings as in ``EVENT_SCHEMA``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: str | None = Field(None, min_length=1, max_length=128)
    event_type: EventType
    ts: datetime | None = None  # naive timestamps are read as UTC; missing: the time of receipt
    profile_id: int = Field(ge=0, le=INT64_MAX)
    title_id: int | None = Field(None, ge=0, le=INT64_MAX)
    session_id: str | None = Field(None, max_length=128)
    device: str | None = Field(None, max_length=32)
    row_index: int | None = Field(None, ge=0, le=INT32_MAX)
    position: int | None = Field(None, ge=0, le=INT32_MAX)
    fraction_watched: float | None = Field(None, ge=0.0, le=1.0)
    position_s: float | None = Field(None, ge=0.0)
    rating: float | None = Field(None, ge=0.5, le=5.0)
    query: str | None = Field(None, max_length=512)
    artwork_id: int | None = Field(None, ge=0, le=INT32_MAX)
    propensity: float | None = Field(None, gt=0.0, le=1.0)
    policy_version: str | None = Field(None, max_length=128)

    @model_validator(mode="after")
    def _required_by_type(self) -> EventIn:
        if self.event_type != EventType.SEARCH and self.title_id is None:
            raise ValueError(f"title_id is required for event_type {self.event_type.value!r}")
        if self.event_type == EventType.RATING and self.rating is None:
            raise ValueError("rating is required for event_type 'rating'")
        if self.event_type == EventType.ARTWORK_IMPRESSION and (self.artwork_id is None or self.propensity is None):
            raise ValueError("artwork_id and propensity are required for event_type 'artwork_impression'")
        return self

    def to_row(self) -> dict[str, Any]:
        """An ``EVENT_SCHEMA`` row, with ``event_id`` and ``ts`` filled in."""
        row = self.model_dump()
        row["event_type"] = self.event_type.value
        row["event_id"] = self.event_id or uuid.uuid4().hex
        row["ts"] = _utc(self.ts)
        return row


class HeartbeatIn(BaseModel):
    """Playback progress: ``position_s`` seconds into ``title_id``; ``completed`` ends it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    profile_id: int = Field(ge=0, le=INT64_MAX)
    title_id: int = Field(ge=0, le=INT64_MAX)
    position_s: float = Field(ge=0.0)
    ts: datetime | None = None
    device: str | None = Field(None, max_length=32)
    completed: bool = False

    def to_rows(self, session_id: str) -> list[dict[str, Any]]:
        """The heartbeat event, plus a ``complete`` event when ``completed`` is set."""
        ts = _utc(self.ts)
        base: dict[str, Any] = {name: None for name in EVENT_SCHEMA.names}
        base.update(profile_id=self.profile_id, title_id=self.title_id, session_id=session_id, device=self.device, ts=ts)
        rows = [{**base, "event_id": uuid.uuid4().hex, "event_type": EventType.HEARTBEAT.value, "position_s": self.position_s}]
        if self.completed:
            rows.append(
                {**base, "event_id": uuid.uuid4().hex, "event_type": EventType.COMPLETE.value,
                 "position_s": self.position_s, "fraction_watched": 1.0}
            )
        return rows


@dataclass(frozen=True)
class EventResult:
    """What became of one posted event: ``accepted``, ``duplicate`` (already in the stream) or
    ``rejected`` (with the ingest rule it failed)."""

    event_id: str
    status: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class RecordResult:
    """Per-event results, and the playback state of the profiles the real-time consumer moved."""

    results: tuple[EventResult, ...]
    states: dict[int, PlaybackState] = field(default_factory=dict)
    state_error: str | None = None
    state_applied: bool = True  # False when the real-time consumer runs elsewhere

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def accepted(self) -> int:
        return self.count("accepted")

    def to_body(self) -> dict[str, Any]:
        updated = None if not self.state_applied else self.state_error is None
        return {"accepted": self.accepted, "duplicates": self.count("duplicate"), "rejected": self.count("rejected"),
                "events": [r.to_dict() for r in self.results], "state_updated": updated, "reason": self.state_error}


class EventChecker:
    """Ingest's rules over posted rows, with the titles of the live snapshot (read once per version)
    and its profiles read one indexed record per distinct profile of a request (``snapshot.profile_strict``:
    nothing per profile held in memory; ``PageStoreUnavailable`` when the records cannot be read, so
    that a store outage is a retryable 503, not the events rejected as unknown profiles)."""

    def __init__(self, snapshot_fn: Callable[[], Any]) -> None:
        self.snapshot_fn = snapshot_fn
        self._titles: tuple[str, pa.Table] | None = None
        self._lock = threading.Lock()

    def _catalog(self, rows: Sequence[dict[str, Any]]) -> tuple[pa.Table, pa.Table] | None:
        """(the live snapshot's titles, the profiles of ``rows`` it knows), or None without a snapshot."""
        snapshot = self.snapshot_fn()
        if snapshot is None:
            return None
        with self._lock:
            if self._titles is None or self._titles[0] != snapshot.version:
                self._titles = (snapshot.version, pq.read_table(snapshot.path / TITLES, columns=["title_id", "artwork_ids"]))
            titles = self._titles[1]
        pids = {int(r["profile_id"]) for r in rows if isinstance(r.get("profile_id"), int)}
        known = sorted(p for p in pids if snapshot.profile_strict(p) is not None)  # unreadable: raises, nothing appended
        return titles, pa.table({"profile_id": pa.array(known, pa.int64())})

    def reasons(self, rows: Sequence[dict[str, Any]], now: datetime) -> np.ndarray:
        """The first failing ingest rule per row ('' when valid), shape (n,)."""
        table = pa.Table.from_pylist(list(rows), schema=EVENT_SCHEMA)
        catalog = self._catalog(rows)
        if catalog is None:
            titles = pa.table({"title_id": pa.array([], pa.int64()), "artwork_ids": pa.array([], pa.list_(pa.int32()))})
            reasons = validate_events(table, titles, pa.table({"profile_id": pa.array([], pa.int64())}), now)[1]
            return np.where(np.isin(reasons, list(CATALOG_RULES)), "", reasons).astype(object)
        return validate_events(table, catalog[0], catalog[1], now)[1]


class EventRecorder:
    """Checks, appends to the stream, then (inline) runs the real-time consumer; see the module doc."""

    def __init__(self, stream: EventStream, checker: EventChecker, realtime: RealtimeConsumer | None) -> None:
        self.stream = stream
        self.checker = checker
        self.realtime = realtime

    def record(self, rows: list[dict[str, Any]]) -> RecordResult:
        """Raises ``features.stream.StreamUnavailable`` (and ``StreamFull``) when nothing could be appended."""
        reasons = self.checker.reasons(rows, datetime.now(UTC))
        results: list[EventResult | None] = [None] * len(rows)
        good: list[int] = []
        for i, (row, reason) in enumerate(zip(rows, reasons)):
            if reason == "duplicate_event_id":
                results[i] = EventResult(str(row["event_id"]), "duplicate")
            elif reason:
                results[i] = EventResult(str(row["event_id"]), "rejected", str(reason))
            else:
                good.append(i)
        appended = self.stream.append([rows[i] for i in good]) if good else []
        for i, done in zip(good, appended):
            results[i] = EventResult(done.event_id, "duplicate" if done.duplicate else "accepted")
        final = tuple(r for r in results if r is not None)
        if self.realtime is None:
            return RecordResult(final, state_applied=False)
        try:
            self.realtime.catch_up()
        except OnlineStoreUnavailable as exc:
            log.warning("playback state not updated (retried with the next events): %s", exc)
            return RecordResult(final, state_error=ONLINE_STORE_UNAVAILABLE)
        pids = {int(rows[i]["profile_id"]) for i in good}
        states = {pid: self.realtime.last_states[pid] for pid in pids if pid in self.realtime.last_states}
        return RecordResult(final, states)

    def record_events(self, events: list[EventIn]) -> RecordResult:
        return self.record([e.to_row() for e in events])

    def heartbeat(self, session_id: str, beat: HeartbeatIn) -> RecordResult:
        return self.record(beat.to_rows(session_id))

    @property
    def seeds(self) -> RecentPlays | None:
        """The "Because you watched" seed per profile (inline real-time consumer only)."""
        return self.realtime.seeds if self.realtime is not None else None


def build_recorder(config: PathwaysConfig, updater: Any, snapshot_fn: Callable[[], Any]) -> EventRecorder:
    """The recorder over ``open_stream(config)``; ``updater`` is a ``PlaybackUpdater`` and
    ``snapshot_fn`` returns the live ``LoadedSnapshot`` (or None)."""
    cfg = config.stream
    stream = open_stream(config)
    realtime = None
    if cfg.realtime == "inline":
        def apply(profile_id: int, events: list[dict[str, Any]]) -> PlaybackState:
            snapshot = snapshot_fn()
            return updater.apply(profile_id, events, snapshot.runtime_s if snapshot is not None else {})

        realtime = RealtimeConsumer(stream, apply, seeds=RecentPlays(cfg.recent_plays), group=cfg.realtime_group,
                                    consumer=f"api-{uuid.uuid4().hex[:8]}", commit_interval_s=cfg.realtime_commit_s)
    return EventRecorder(stream, EventChecker(snapshot_fn), realtime)


def run_realtime(config: PathwaysConfig, stop: threading.Event) -> None:
    """The real-time consumer group as its own process (``stream.realtime = "external"``): events
    into the Feast online store's playback state, until ``stop`` is set."""
    from serving.playback import OnlinePlaybackStore, PlaybackUpdater
    from serving.snapshots import SnapshotStore

    snapshots = SnapshotStore(config.snapshots_dir, config.serving.snapshot_poll_s, background=False,
                              standby=False)  # reads runtimes only: a rollback may load
    snapshots.refresh()
    updater = PlaybackUpdater(OnlinePlaybackStore(config.feature_repo_dir), config.candidates.finished_fraction,
                              config.candidates.continue_min_fraction)

    def apply(profile_id: int, events: list[dict[str, Any]]) -> PlaybackState:
        snapshot = snapshots.state().snapshot
        return updater.apply(profile_id, events, snapshot.runtime_s if snapshot is not None else {})

    consumer = RealtimeConsumer(open_stream(config), apply, seeds=RecentPlays(config.stream.recent_plays),
                                group=config.stream.realtime_group, commit_interval_s=config.stream.realtime_commit_s)
    consumer.run(stop)


if __name__ == "__main__":  # python -m serving.events [--config F] [--set k=v ...]
    import argparse
    import signal

    from pathways.config import load_config, parse_override

    parser = argparse.ArgumentParser(prog="python -m serving.events", description=run_realtime.__doc__)
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    run_realtime(load_config(args.config, **dict(parse_override(o) for o in args.set)), stop_event)
