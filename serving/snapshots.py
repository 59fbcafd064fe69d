"""The live snapshot, held in memory and swapped atomically when ``CURRENT`` moves.

``SnapshotStore(root, poll_s)`` reads ``root/CURRENT`` at most once per ``poll_s`` seconds (from
the request path: one small file read, no background thread to manage). When the pointer names
a new version, the new snapshot is loaded (in a background thread by default, so requests keep
being served from the old one) and swapped in with one reference assignment. A version that
fails to load is remembered and not retried; the old snapshot stays live. When the pointer or
the live version's files vanish, ``state()`` reports ``problem="snapshot missing"`` and keeps
the last loaded snapshot in memory so fallback pages can still be served from it.

Pages are parsed once, at load, into columnar ``PageRows`` (~13 KB per 40 x 40 page, where the
JSON text is ~200 KB and ``Page`` objects several hundred KB); a page that cannot be parsed makes
the whole version fail to load (it is never half-served).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pathways.catalog import Catalog
from pathways.snapshot import FALLBACK, PAGES, PROFILES, TITLES, SnapshotError, current_version, read_manifest
from serving.rows import PageRows, TitleRenderer, parse_pages

log = logging.getLogger(__name__)

SNAPSHOT_MISSING = "snapshot missing"


@dataclass(frozen=True)
class ProfileRecord:
    """What serving needs to know about a profile seen at build time."""

    profile_id: int
    region: str
    max_maturity_level: int
    is_kids: bool
    account_id: int | None = None


@dataclass(frozen=True)
class LoadedSnapshot:
    """One published snapshot in memory.

    ``pages``: profile id -> (cell, rows). ``fallbacks``: (region, maturity) -> rows.
    ``runtime_s``: title id -> runtime in seconds (for heartbeat fractions).
    """

    version: str
    path: Path
    pages: dict[int, tuple[str, PageRows]]
    fallbacks: dict[tuple[str, int], PageRows]
    catalog: Catalog
    renderer: TitleRenderer
    runtime_s: dict[int, float]
    profiles: dict[int, ProfileRecord]
    manifest: dict[str, Any] = field(default_factory=dict)


def load_snapshot(path: Path) -> LoadedSnapshot:
    """Read every file of the snapshot at ``path``; raises ``SnapshotError`` if any is unusable."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        pages = pq.read_table(path / PAGES)
        fallbacks = pq.read_table(path / FALLBACK)
        titles = pq.read_table(path / TITLES)
        profiles = pq.read_table(path / PROFILES)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on bad files
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from None
    catalog = Catalog.from_table(titles)
    runtime = dict(
        zip(
            titles.column("title_id").to_numpy().tolist(),
            (titles.column("runtime_min").to_numpy().astype(np.float64) * 60.0).tolist(),
        )
    )
    records = {
        int(r["profile_id"]): ProfileRecord(
            int(r["profile_id"]), str(r["region"]), int(r["max_maturity_level"]), bool(r["is_kids"]), int(r["account_id"])
        )
        for r in profiles.select(["profile_id", "region", "max_maturity_level", "is_kids", "account_id"]).to_pylist()
    }
    try:
        page_map = dict(
            zip(
                pages.column("profile_id").to_pylist(),
                zip(pages.column("cell").to_pylist(), parse_pages(pages.column("page_json").to_pylist())),
            )
        )
        fallback_map = dict(
            zip(
                zip(fallbacks.column("region").to_pylist(), fallbacks.column("max_maturity_level").to_pylist()),
                parse_pages(fallbacks.column("page_json").to_pylist()),
            )
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot {path} holds an unreadable page: {exc!r}") from None
    return LoadedSnapshot(
        version=str(manifest.get("version", path.name)),
        path=path,
        pages=page_map,
        fallbacks=fallback_map,
        catalog=catalog,
        renderer=TitleRenderer(catalog),
        runtime_s=runtime,
        profiles=records,
        manifest=manifest,
    )


@dataclass(frozen=True)
class SnapshotState:
    """What a request sees: the snapshot in memory (or None) and what is wrong, if anything."""

    snapshot: LoadedSnapshot | None
    problem: str | None = None  # "snapshot missing" when the pointer or files are gone


class SnapshotStore:
    """The live snapshot under ``root``, re-checked at most every ``poll_s`` seconds."""

    def __init__(
        self,
        root: Path | str,
        poll_s: float = 2.0,
        *,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
        loader: Callable[[Path], LoadedSnapshot] = load_snapshot,
    ) -> None:
        self.root = Path(root)
        self.poll_s = float(poll_s)
        self.background = background
        self._clock = clock
        self._loader = loader
        self._snapshot: LoadedSnapshot | None = None
        self._problem: str | None = SNAPSHOT_MISSING
        self._failed: set[str] = set()
        self._loading: str | None = None
        self._next_check = -float("inf")
        self._lock = threading.Lock()

    def state(self) -> SnapshotState:
        """The current snapshot and problem, polling ``CURRENT`` if ``poll_s`` has passed."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.poll_s
            self._check()
        return SnapshotState(self._snapshot, self._problem)

    def refresh(self) -> SnapshotState:
        """Check ``CURRENT`` now and load a new version synchronously (start-up, tests)."""
        self._check(synchronous=True)
        self._next_check = self._clock() + self.poll_s
        return SnapshotState(self._snapshot, self._problem)

    def _check(self, synchronous: bool = False) -> None:
        try:
            version = current_version(self.root)
        except OSError as exc:
            log.warning("cannot read the snapshot pointer under %s: %s", self.root, exc)
            version = None
        if version is None:
            self._problem = SNAPSHOT_MISSING
            return
        live = self._snapshot
        if live is not None and live.version == version:
            self._problem = None if (live.path / "manifest.json").is_file() else SNAPSHOT_MISSING
            return
        if version in self._failed:
            self._problem = None if live is not None else SNAPSHOT_MISSING
            return
        if self.background and not synchronous:
            self._start_background_load(version)
        else:
            self._load(version)

    def _start_background_load(self, version: str) -> None:
        with self._lock:
            if self._loading is not None:
                return
            self._loading = version
        threading.Thread(target=self._load, args=(version,), name=f"snapshot-load-{version}", daemon=True).start()

    def _load(self, version: str) -> None:
        try:
            snapshot = self._loader(self.root / version)
        except (SnapshotError, OSError, ValueError, KeyError) as exc:
            log.error("snapshot %s cannot be loaded, keeping %s: %s", version, self.version, exc)
            self._failed.add(version)
            self._problem = None if self._snapshot is not None else SNAPSHOT_MISSING
        else:
            self._snapshot = snapshot  # the atomic swap: one reference assignment
            self._problem = None
            log.info("serving snapshot %s (%d pages)", snapshot.version, len(snapshot.pages))
        finally:
            with self._lock:
                if self._loading == version:
                    self._loading = None

    @property
    def version(self) -> str | None:
        return self._snapshot.version if self._snapshot is not None else None
