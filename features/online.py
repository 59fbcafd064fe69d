"""Online feature reads and real-time playback state for serving, over the Feast online store.

``OnlineFeatureClient(repo_dir)`` opens the feature repo written by ``FeatureStoreManager`` once
(lazily, on first use) and keeps the ``FeatureStore``. Every failure to reach the store (no repo,
no registry, a missing SQLite file, Redis down, any exception inside Feast) raises
``OnlineStoreUnavailable`` with the cause chained: serving turns it into a fallback page.

Playback state lives in the ``profile_playback`` feature view, fed by the
``profile_playback_push`` PushSource: parallel arrays ``in_progress_title_ids``,
``in_progress_fractions``, ``in_progress_updated`` (epoch s) and ``finished_title_ids``. ``page_state`` reads it together with
the profile features a page's artwork context needs (``CONTEXT_FIELDS``) in ONE online read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.history import PlaybackState
from features.profile_vector import VECTOR, unpack_row

PROFILE_VIEW = "profile_online"  # profile_stats packed into one vector (features/profile_vector.py)
PLAYBACK_VIEW = "profile_playback"
PLAYBACK_PUSH = "profile_playback_push"
PLAYBACK_FIELDS = ("in_progress_title_ids", "in_progress_fractions", "in_progress_updated", "finished_title_ids")
CONTEXT_FIELDS = ("genre_affinity",)  # profile features of the artwork policy's context (bandits.features)
_PLAYBACK_REFS = [f"{PLAYBACK_VIEW}:{f}" for f in PLAYBACK_FIELDS]
_PROFILE_REFS = [f"{PROFILE_VIEW}:{VECTOR}"]
_PAGE_REFS = _PLAYBACK_REFS + _PROFILE_REFS


class OnlineStoreUnavailable(RuntimeError):
    """The online feature store cannot be used; ``__cause__`` holds the underlying error."""


class OnlineFeatureClient:
    """Per-request online reads (profile features, playback state) and playback pushes."""

    def __init__(self, repo_dir: Path | str, read_timeout_s: float | None = None) -> None:
        self.repo_dir = Path(repo_dir)
        self.read_timeout_s = read_timeout_s
        self.bounded_reads = False  # True once on Redis with read_timeout_s: every call ends within it
        self._store: Any = None
        self._sqlite_path: Path | None = None

    def _open(self) -> Any:
        """The FeatureStore, checking first that its files are still there."""
        if self._store is None:
            try:
                self._store = self._connect()
            except OnlineStoreUnavailable:
                raise
            except Exception as exc:
                raise OnlineStoreUnavailable(f"cannot open the feature store at {self.repo_dir}: {exc}") from exc
        if self._sqlite_path is not None and not self._sqlite_path.exists():
            raise OnlineStoreUnavailable(f"online store file {self._sqlite_path} is missing")
        return self._store

    def _connect(self) -> Any:
        yaml = self.repo_dir / "feature_store.yaml"
        if not yaml.exists():
            raise OnlineStoreUnavailable(f"no feature_store.yaml in {self.repo_dir}")
        from feast import FeatureStore

        store = FeatureStore(repo_path=str(self.repo_dir))
        registry = Path(str(store.config.registry.path))
        if not registry.is_absolute():
            registry = self.repo_dir / registry
        if not registry.exists():
            raise OnlineStoreUnavailable(f"feature registry {registry} is missing (run apply)")
        online = store.config.online_store
        if getattr(online, "type", "") == "sqlite":
            path = Path(online.path)
            self._sqlite_path = path if path.is_absolute() else self.repo_dir / path
            if not self._sqlite_path.exists():
                raise OnlineStoreUnavailable(f"online store file {self._sqlite_path} is missing")
        if getattr(online, "type", "") == "redis":
            _fail_fast_on_redis(store, self.read_timeout_s)
            self.bounded_reads = self.read_timeout_s is not None
        store.get_feature_view(PROFILE_VIEW)  # registered (raises if not)
        return store

    def _read(self, features: list[str], profile_id: int) -> dict[str, Any]:
        store = self._open()
        try:
            got = store.get_online_features(features=features, entity_rows=[{"profile_id": int(profile_id)}])
            return {k: v[0] for k, v in got.to_dict().items()}
        except Exception as exc:
            raise OnlineStoreUnavailable(f"online read failed: {exc}") from exc

    def profile_features(self, profile_id: int) -> dict[str, Any]:
        """The profile features read online of ``profile_id`` (``profile_vector.FIELDS``: name ->
        value; values None if never seen)."""
        return unpack_row(self._read(_PROFILE_REFS, profile_id).get(VECTOR))

    def playback_state(self, profile_id: int) -> PlaybackState:
        """The pushed playback state of ``profile_id`` (empty if none was pushed)."""
        return _playback(self._read(_PLAYBACK_REFS, profile_id), profile_id)

    def page_state(self, profile_id: int) -> tuple[PlaybackState, dict[str, Any]]:
        """What one page needs from the online store, in one read: the playback state and the
        ``CONTEXT_FIELDS`` of the profile (name -> value, None if never materialized)."""
        got = self._read(_PAGE_REFS, profile_id)
        features = unpack_row(got.get(VECTOR))
        return _playback(got, profile_id), {f: features[f] for f in CONTEXT_FIELDS}

    def write_playback_state(self, profile_id: int, state: PlaybackState, now: datetime | None = None) -> None:
        """Write ``state`` for ``profile_id`` to the online store (replaces the previous one)."""
        store = self._open()
        titles = sorted(state.in_progress)
        row = {
            "profile_id": [int(profile_id)],
            "event_timestamp": [pd.Timestamp(now or datetime.now(UTC))],
            "in_progress_title_ids": [titles],
            "in_progress_fractions": [[float(state.in_progress[t][0]) for t in titles]],
            "in_progress_updated": [[int(state.in_progress[t][1]) for t in titles]],
            "finished_title_ids": [sorted(int(t) for t in state.finished)],
        }
        try:
            # Straight into the push source's feature view: push() re-resolves the registry on
            # every call (~4x slower, measured); the written rows and the read path are the same.
            store.write_to_online_store(PLAYBACK_VIEW, pd.DataFrame(row))
        except Exception as exc:
            raise OnlineStoreUnavailable(f"playback push failed: {exc}") from exc


def _playback(got: dict[str, Any], profile_id: int) -> PlaybackState:
    """The playback state from an online read's values (``PLAYBACK_FIELDS``)."""
    ids = got.get("in_progress_title_ids") or []
    fracs = got.get("in_progress_fractions") or []
    updated = got.get("in_progress_updated") or []
    if not len(ids) == len(fracs) == len(updated):
        raise OnlineStoreUnavailable(f"playback state of profile {profile_id} has ragged arrays")
    return PlaybackState(
        # Fractions are stored as float32: round to 6 decimals so 0.4 reads back as 0.4.
        {int(t): (round(float(f), 6), float(u)) for t, f, u in zip(ids, fracs, updated)},
        frozenset(int(t) for t in got.get("finished_title_ids") or []),
    )


def _fail_fast_on_redis(store: Any, timeout_s: float | None = None) -> None:
    """Make the Redis client raise at once when Redis is down (redis-py retries with a back-off
    of seconds by default, far beyond a page's latency budget) and, with ``timeout_s``, when it does
    not answer within it (a paused or stalled server). Uses Feast's client accessor."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    online = store.provider.online_store
    client = online._get_client(store.config.online_store)  # Feast has no public accessor
    client.set_retry(Retry(NoBackoff(), 0))
    if timeout_s is not None:
        client.connection_pool.connection_kwargs.update(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        client.connection_pool.disconnect()  # connections made from now on carry the timeouts
