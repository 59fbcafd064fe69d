"""Real-time playback state per profile: one small protocol, two implementations.

- ``InMemoryPlaybackStore``: a dict (unit tests, a single process without Feast).
- ``OnlinePlaybackStore``: an adapter over ``features.online.OnlineFeatureClient`` (the Feast online
  store, SQLite or Redis), for the real stack.

``get_with_features`` is a page's one online read: the playback state and the profile features of
the artwork context together (``None`` from a store that holds no features: the policy reads its
own). Both raise ``OnlineStoreUnavailable`` when the state cannot be read or written; serving turns a
failed read into a fallback page and a failed write into ``state_updated: false``.
``PlaybackUpdater`` folds events into a profile's state with ``features.history.apply_event``,
read-modify-write under a per-profile lock so concurrent heartbeats of one profile are not lost
within a process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from features.history import PlaybackState, apply_event
from features.online import OnlineStoreUnavailable

__all__ = [
    "InMemoryPlaybackStore",
    "OnlinePlaybackStore",
    "OnlineStoreUnavailable",
    "PlaybackStore",
    "PlaybackUpdater",
]


class PlaybackStore(Protocol):
    """Where the real-time playback state of each profile lives."""

    def get(self, profile_id: int) -> PlaybackState:
        """The state of ``profile_id`` (empty if none); raises ``OnlineStoreUnavailable``."""
        ...

    def get_with_features(self, profile_id: int) -> tuple[PlaybackState, dict[str, Any] | None]:
        """The state and the profile's context features in one read (None: no features here)."""
        ...

    def put(self, profile_id: int, state: PlaybackState) -> None:
        """Replace the state of ``profile_id``; raises ``OnlineStoreUnavailable``."""
        ...

    def ping(self) -> bool:
        """True when the store answers."""
        ...


class InMemoryPlaybackStore:
    """Playback states in a dict; ``available=False`` makes every call raise (for tests)."""

    def __init__(self, states: Mapping[int, PlaybackState] | None = None) -> None:
        self._states: dict[int, PlaybackState] = dict(states or {})
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise OnlineStoreUnavailable("in-memory playback store switched off")

    def get(self, profile_id: int) -> PlaybackState:
        self._check()
        return self._states.get(int(profile_id), PlaybackState())

    def get_with_features(self, profile_id: int) -> tuple[PlaybackState, dict[str, Any] | None]:
        return self.get(profile_id), None

    def put(self, profile_id: int, state: PlaybackState) -> None:
        self._check()
        self._states[int(profile_id)] = state

    def ping(self) -> bool:
        return self.available


class OnlinePlaybackStore:
    """``PlaybackStore`` over the Feast online store of the feature repo at ``repo_dir``."""

    def __init__(self, repo_dir: Path | str, client: Any = None, read_timeout_s: float | None = None) -> None:
        if client is None:
            from features.online import OnlineFeatureClient

            client = OnlineFeatureClient(repo_dir, read_timeout_s)
        self.client = client

    @property
    def bounded_reads(self) -> bool:
        """Whether every read ends within the client's timeout (Redis with ``read_timeout_s``): the
        page's read then runs in the page's own thread, no hop to the stage pool."""
        return bool(getattr(self.client, "bounded_reads", False))

    def get(self, profile_id: int) -> PlaybackState:
        return self.client.playback_state(int(profile_id))

    def get_with_features(self, profile_id: int) -> tuple[PlaybackState, dict[str, Any] | None]:
        state, features = self.client.page_state(int(profile_id))
        return state, features

    def put(self, profile_id: int, state: PlaybackState) -> None:
        self.client.write_playback_state(int(profile_id), state)

    def ping(self) -> bool:
        try:
            self.client.playback_state(-1)
        except OnlineStoreUnavailable:
            return False
        return True


class PlaybackUpdater:
    """Applies events to playback states in ``store`` (read, fold, write back)."""

    def __init__(
        self, store: PlaybackStore, finished_fraction: float, min_fraction: float, n_locks: int = 64
    ) -> None:
        self.store = store
        self.finished_fraction = finished_fraction
        self.min_fraction = min_fraction
        self._locks = tuple(threading.Lock() for _ in range(n_locks))

    def apply(self, profile_id: int, events: Iterable[Mapping[str, Any]], runtime_s: Mapping[int, float]) -> PlaybackState:
        """Fold ``events`` (EVENT_SCHEMA dicts of one profile, any order) into its state.

        Events whose title has no known runtime still count when they carry ``fraction_watched``
        (or are ``complete``); a heartbeat needs the runtime to become a fraction.
        """
        ordered = sorted(events, key=lambda e: e["ts"])
        with self._locks[hash(int(profile_id)) % len(self._locks)]:
            state = self.store.get(profile_id)
            for event in ordered:
                title = event.get("title_id")
                runtime = float(runtime_s.get(int(title), 0.0)) if title is not None else 0.0
                state = apply_event(state, event, runtime, self.finished_fraction, self.min_fraction)
            self.store.put(profile_id, state)
        return state
