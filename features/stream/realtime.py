"""The real-time consumer group: new events folded into per-profile state, then committed.

``RealtimeConsumer.catch_up()`` reads everything the group has not committed, hands each
profile's playback events (play, pause, complete, heartbeat; other types move no state) (oldest first, ``ts`` as a UTC datetime) to ``apply`` (serving passes its
``PlaybackUpdater``, which writes through the online-store path) and records plays in
``RecentPlays``, the "Because you watched" seed of the profile's next page. It commits only
after ``apply`` returned for every profile of the batch, and at most every ``commit_interval_s``
(a commit costs an fsync; after a crash the uncommitted tail is applied again, in order, which
gives the same state). If ``apply`` raises (the online store is down), the read position goes
back to the last commit, so the same events are applied again, in order, by the next call.

It runs inline in the API process (``stream.realtime = "inline"``: the request that appended
calls ``catch_up`` before answering, so the next page shows the event) or as its own process
(``python -m features.stream realtime``) with a shared online store.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from features.history import PROGRESS_TYPES
from features.schema import EventType
from features.stream.base import EventStream, StreamEntry

ApplyFn = Callable[[int, list[dict[str, Any]]], Any]
RELEVANT = frozenset(str(t) for t in PROGRESS_TYPES)  # the types that move playback state or the seed


class RecentPlays:
    """Per profile, the last ``n`` distinct titles played, most recent first (bounded in profiles)."""

    def __init__(self, n: int = 5, max_profiles: int = 1_000_000) -> None:
        self.n = n
        self.max_profiles = max_profiles
        self._plays: OrderedDict[int, tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, profile_id: int, events: Sequence[dict[str, Any]]) -> None:
        titles = [int(e["title_id"]) for e in events if e["event_type"] == EventType.PLAY and e.get("title_id") is not None]
        if not titles:
            return
        with self._lock:
            recent = list(self._plays.pop(profile_id, ()))
            for title in titles:  # events come oldest first
                recent = [title] + [t for t in recent if t != title]
            self._plays[profile_id] = tuple(recent[: self.n])
            if len(self._plays) > self.max_profiles:
                self._plays.popitem(last=False)

    def get(self, profile_id: int) -> tuple[int, ...]:
        with self._lock:
            return self._plays.get(int(profile_id), ())


def _as_event(entry: StreamEntry) -> dict[str, Any]:
    event = dict(entry.event)
    event["ts"] = datetime.fromtimestamp(int(event["ts"]) / 1000.0, tz=UTC)
    return event


class RealtimeConsumer:
    """Applies the stream's new events for ``group`` (see the module docstring)."""

    def __init__(
        self,
        stream: EventStream,
        apply: ApplyFn,
        *,
        seeds: RecentPlays | None = None,
        group: str = "realtime",
        consumer: str = "realtime-1",
        batch_size: int = 2_000,
        commit_interval_s: float = 0.0,
    ) -> None:
        self.stream = stream
        self.apply = apply
        self.seeds = seeds if seeds is not None else RecentPlays()
        self.group = group
        self.consumer = consumer
        self.batch_size = batch_size
        self.commit_interval_s = commit_interval_s
        self._last_commit = 0.0
        self._uncommitted: list[str] = []
        self._lock = threading.Lock()
        self.last_states: dict[int, Any] = {}

    def catch_up(self, block_s: float = 0.0) -> dict[int, Any]:
        """Apply and commit every uncommitted entry; returns the new state per profile touched.
        Raises whatever ``apply`` raised (after rewinding: nothing of the failed batch is committed)."""
        states: dict[int, Any] = {}
        with self._lock:
            while True:
                entries = self.stream.read(self.group, self.consumer, self.batch_size, block_s=block_s)
                block_s = 0.0
                if not entries:
                    break
                by_profile: dict[int, list[dict[str, Any]]] = defaultdict(list)
                for entry in entries:
                    if entry.event["event_type"] in RELEVANT:  # client impressions, searches...: no state to move
                        event = _as_event(entry)
                        by_profile[int(event["profile_id"])].append(event)
                try:
                    for pid, events in by_profile.items():
                        events.sort(key=lambda e: e["ts"])
                        states[pid] = self.apply(pid, events)
                        self.seeds.record(pid, events)
                except Exception:
                    self._uncommitted = []
                    self.stream.rewind(self.group)
                    raise
                self._uncommitted += [e.position for e in entries]
            if self._uncommitted and time.monotonic() - self._last_commit >= self.commit_interval_s:
                self.stream.commit(self.group, self._uncommitted)
                self._uncommitted, self._last_commit = [], time.monotonic()
            if len(self.last_states) > 100_000:
                self.last_states.clear()
            self.last_states.update(states)
        return states

    def run(self, stop: threading.Event, block_s: float = 0.2) -> None:
        """Catch up until ``stop`` is set (a consumer process)."""
        while not stop.is_set():
            try:
                self.catch_up(block_s=block_s)
            except Exception:  # noqa: BLE001 - a failed apply is retried from the same position
                stop.wait(1.0)
