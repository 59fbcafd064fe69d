"""The live snapshot, swapped atomically when ``CURRENT`` moves; pages read one profile at a time.

``SnapshotStore(root, poll_s)`` reads ``root/CURRENT`` at most once per ``poll_s`` seconds (from
the request path: one small file read, no background thread to manage). When the pointer names
a new version, the new snapshot is opened (in a background thread by default, so requests keep
being served from the old one) and swapped in with one reference assignment. A version that
fails to open is remembered and not retried; the old snapshot stays live. The version a rollback
goes to stays loaded beside the live one (``standby``): after a swap, the one swapped out; at
start-up, the newest version older than the live one (``pathways.snapshot.previous_version``),
loaded in the background. When ``CURRENT`` names the standby, serving switches to it with one
reference assignment in the polling request, no load (a rollback and the roll forward after it
take no file read beyond the pointer; ~the memory of one more snapshot's fallbacks and catalog,
nothing per profile). When the pointer or
the live version's files vanish, the loaded snapshot keeps being served in full (its page store
holds the file open: ``pathways.pagestore.SqlitePageReader``) and ``state()`` reports
``problem=SNAPSHOT_DETACHED`` (health says so, logged once); ``problem="snapshot missing"`` only
while nothing is loaded.

The read API (stable): ``LoadedSnapshot.page(profile_id) -> StoredPage | None`` (the cell the
page was built for and its ``CompactRows``) reads one profile's page from the page store per call
(``pages.sqlite``: one indexed lookup, ~0.1 ms; Redis: one round trip), so a replica's memory does
not grow with the number of profiles; ``LoadedSnapshot.profile(profile_id) -> ProfileContext | None``
reads the build-time record (region, maturity ceiling, kids, account) from the same page store
(one indexed lookup, a few us; Redis: one round trip), so nothing per profile stays in memory; a
store that cannot be read answers None (the unknown-profile path: kids-safe fallback, and access
control denies account tokens). Snapshots published before the store held records read
``profiles.parquet`` into columnar arrays (``ProfileIndex``, ~12 bytes a profile), as before.
``pages`` and ``profiles`` are the same reads as read-only mappings.
Fallback pages, the catalog and runtimes stay in memory. Snapshots of the older layout
(``pages.parquet``) are parsed whole at load, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pathways.catalog import Catalog
from pathways.pageblob import StoredPage, decode_page
from pathways.pagestore import PAGES_SQLITE, PageReader, PageStoreUnavailable, RedisPageStore, SqlitePageStore
from pathways.profilerecords import COLUMNS as PROFILE_COLUMNS
from pathways.snapshot import (
    FALLBACK,
    MANIFEST,
    PAGES,
    PROFILES,
    TITLES,
    SnapshotError,
    current_version,
    list_versions,
    previous_version,
    read_manifest,
)
from pathways.types import CompactRows, ProfileContext
from serving.because import SimilarTitles, load_similar
from serving.rows import TitleRenderer, parse_pages

log = logging.getLogger(__name__)

SNAPSHOT_MISSING = "snapshot missing"
SNAPSHOT_DETACHED = "snapshot files removed from disk: serving the copy already loaded"


class SnapshotUnavailable(SnapshotError):
    """The snapshot is fine but its page store cannot be reached now (Redis down): retried later."""


V = TypeVar("V")


class _ByGet(Mapping[int, V]):
    """A read-only mapping whose ``get`` does the lookup (None: absent); ``[]`` raises KeyError then."""

    def __getitem__(self, profile_id: int) -> V:
        value = self.get(profile_id)
        if value is None:
            raise KeyError(profile_id)
        return value

    def strict(self, profile_id: int) -> V | None:
        """``get``, except where a lookup cannot be answered now it raises instead of answering None
        (``StoreProfiles``: ``PageStoreUnavailable``); an in-memory mapping always can."""
        return self.get(profile_id)


class StorePages(_ByGet[StoredPage]):
    """Profile id -> ``StoredPage``, read from a page store on each lookup (nothing cached)."""

    def __init__(self, reader: PageReader, count: int) -> None:
        self.reader = reader
        self.count = count

    def get(self, profile_id: int, default: Any = None) -> Any:
        blob = self.reader.get(int(profile_id))
        return default if blob is None else decode_page(blob)

    def __contains__(self, profile_id: object) -> bool:
        return isinstance(profile_id, int) and self.reader.get(profile_id) is not None

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        raise TypeError("a page store is read one profile at a time; it is not iterated")


class StoreProfiles(_ByGet[ProfileContext]):
    """Profile id -> build-time ``ProfileContext``, read from the page store's records on each lookup."""

    def __init__(self, reader: PageReader, count: int) -> None:
        self.reader = reader
        self.count = count
        self._warned_at = -float("inf")

    def get(self, profile_id: int, default: Any = None) -> Any:
        try:
            found = self.strict(profile_id)
        except PageStoreUnavailable as exc:  # unknown for now: the kids-safe path, never a foreign account
            if time.monotonic() - self._warned_at > 60.0:
                self._warned_at = time.monotonic()
                log.warning("profile records unreadable, serving profiles as unknown (logged once a minute): %s", exc)
            return default
        return default if found is None else found

    def strict(self, profile_id: int) -> ProfileContext | None:
        """The record of ``profile_id`` (None: not in the snapshot); ``PageStoreUnavailable`` when the
        records cannot be read now, for the callers that must tell "unknown" from "cannot say"
        (account binding, event intake)."""
        record = self.reader.profile(int(profile_id))
        if record is None:
            return None
        return ProfileContext(profile_id=int(profile_id), region=record.region, max_maturity_level=record.max_maturity_level,
                              is_kids=record.is_kids, account_id=record.account_id)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        raise TypeError("profile records are read one profile at a time; they are not iterated")


class ProfileIndex(_ByGet[ProfileContext]):
    """The profiles seen at build time as sorted columnar arrays; ``get`` builds one ``ProfileContext``
    (snapshots whose page store holds no profile records)."""

    COLUMNS = PROFILE_COLUMNS

    def __init__(self, table: pa.Table) -> None:
        table = table.select(list(self.COLUMNS)).sort_by("profile_id")
        self.ids = _narrow(table.column("profile_id").to_numpy())
        regions = table.column("region").combine_chunks().dictionary_encode()
        self.region_names = tuple(regions.dictionary.to_pylist())
        self.region_codes = regions.indices.to_numpy(zero_copy_only=False).astype(np.int16)
        self.maturity = table.column("max_maturity_level").to_numpy().astype(np.int8)
        self.is_kids = table.column("is_kids").to_numpy(zero_copy_only=False).astype(bool)
        self.account = _narrow(table.column("account_id").fill_null(-1).to_numpy())

    def get(self, profile_id: int, default: Any = None) -> Any:
        pid = int(profile_id)
        if not np.iinfo(self.ids.dtype).min <= pid <= np.iinfo(self.ids.dtype).max:
            return default
        at = int(np.searchsorted(self.ids, self.ids.dtype.type(pid)))  # a Python int would copy ids to int64
        if at >= len(self.ids) or self.ids[at] != pid:
            return default
        account = int(self.account[at])
        return ProfileContext(
            profile_id=pid, region=self.region_names[self.region_codes[at]], max_maturity_level=int(self.maturity[at]),
            is_kids=bool(self.is_kids[at]), account_id=None if account < 0 else account,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids.tolist())


def _narrow(ids: np.ndarray) -> np.ndarray:
    """int32 when every value fits (half the memory per profile), else int64."""
    ids = np.asarray(ids, dtype=np.int64)
    small = len(ids) == 0 or (ids.min() >= np.iinfo(np.int32).min and ids.max() <= np.iinfo(np.int32).max)
    return ids.astype(np.int32) if small else ids


@dataclass(frozen=True)
class LoadedSnapshot:
    """One published snapshot: page reads go to its page store, the rest is in memory.

    ``pages``: profile id -> ``StoredPage`` (cell, rows), read per lookup. ``fallbacks``:
    (region, maturity) -> rows. ``runtime_s``: title id -> runtime in seconds (for heartbeat
    fractions). ``profiles``: the profiles seen at build time (region, maturity ceiling, kids,
    account; no history).
    """

    version: str
    path: Path
    pages: Mapping[int, StoredPage]
    fallbacks: dict[tuple[str, int], CompactRows]
    catalog: Catalog
    renderer: TitleRenderer
    runtime_s: dict[int, float]
    profiles: _ByGet[ProfileContext]
    manifest: dict[str, Any] = field(default_factory=dict)
    similar: SimilarTitles | None = None  # the streamed "Because you watched" row's table (serving.because)

    def page(self, profile_id: int) -> StoredPage | None:
        """The stored page of ``profile_id`` (None: none in this snapshot); raises
        ``PageStoreUnavailable`` when the store cannot be read."""
        return self.pages.get(int(profile_id))

    def profile(self, profile_id: int) -> ProfileContext | None:
        """The build-time record of ``profile_id`` (None: never seen, or the records cannot be read
        now: the page path then serves it as unknown, kids-safe)."""
        return self.profiles.get(int(profile_id))

    def profile_strict(self, profile_id: int) -> ProfileContext | None:
        """``profile``, but ``PageStoreUnavailable`` when the records cannot be read now (a Redis
        outage) instead of None: "not ours" and "cannot say" must not be confused where access or
        acceptance depends on it."""
        return self.profiles.strict(int(profile_id))


def open_pages(path: Path, manifest: dict[str, Any]) -> tuple[Mapping[int, StoredPage], _ByGet[ProfileContext]]:
    """The pages and profile records of the snapshot at ``path``: its ``pages.sqlite``, the Redis
    version its manifest names, or (older layout) ``pages.parquet`` parsed whole; profile records
    from the same store, else (stores written before records) ``profiles.parquet`` in memory.
    One page is decoded to check the format."""
    version = str(manifest.get("version", path.name))
    store = manifest.get("page_store") or {}
    count = int(manifest.get("counts", {}).get("profiles", 0) or 0)
    reader: PageReader | None = None
    pages: Mapping[int, StoredPage]
    if store.get("backend") == "redis":
        redis_store = RedisPageStore.from_url(store["url"], store["prefix"], float(store.get("timeout_s", 0.05)))
        if not redis_store.is_complete(version):
            raise SnapshotError(f"page store version {version} is not complete in redis")
        reader = redis_store.reader(version)
        pages = StorePages(reader, count)
    elif (path / PAGES_SQLITE).is_file():
        sqlite_reader = SqlitePageStore().reader(path, version)
        reader, pages = sqlite_reader, StorePages(sqlite_reader, len(sqlite_reader))
        first = sqlite_reader.sample()
        if first is not None:
            decode_page(first)
    else:
        table = pq.read_table(path / PAGES)
        rows = parse_pages(table.column("page_json").to_pylist())
        pages = {int(p): StoredPage(str(c), r) for p, c, r in zip(
            table.column("profile_id").to_pylist(), table.column("cell").to_pylist(), rows)}
    n_records = reader.profile_count() if reader is not None else None
    if reader is not None and n_records is not None:
        return pages, StoreProfiles(reader, n_records)
    index = ProfileIndex(pq.read_table(path / PROFILES, columns=list(ProfileIndex.COLUMNS)))
    pa.default_memory_pool().release_unused()  # the Arrow table read above is garbage now
    return pages, index


def load_snapshot(path: Path) -> LoadedSnapshot:
    """Open the snapshot at ``path``; raises ``SnapshotError`` if any part is unusable."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        fallbacks = pq.read_table(path / FALLBACK)
        titles = pq.read_table(path / TITLES)
        if not (path / PROFILES).is_file():
            raise SnapshotError(f"snapshot {path} has no {PROFILES}")
        pages, profiles = open_pages(path, manifest)
    except PageStoreUnavailable as exc:  # Redis down: worth trying again at the next poll
        raise SnapshotUnavailable(f"page store of snapshot {path} unreachable: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # ArrowInvalid is a ValueError
        raise SnapshotError(f"cannot read snapshot {path}: {exc!r}") from None
    catalog = Catalog.from_table(titles)
    runtime = dict(
        zip(
            titles.column("title_id").to_numpy().tolist(),
            (titles.column("runtime_min").to_numpy().astype(np.float64) * 60.0).tolist(),
        )
    )
    try:
        fallback_map = dict(
            zip(
                zip(fallbacks.column("region").to_pylist(), fallbacks.column("max_maturity_level").to_pylist()),
                parse_pages(fallbacks.column("page_json").to_pylist()),
            )
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"snapshot {path} holds an unreadable page: {exc!r}") from None
    pa.default_memory_pool().release_unused()  # the Arrow tables read above are garbage now
    return LoadedSnapshot(
        version=str(manifest.get("version", path.name)),
        path=path,
        pages=pages,
        fallbacks=fallback_map,
        catalog=catalog,
        renderer=TitleRenderer(catalog),
        runtime_s=runtime,
        profiles=profiles,
        manifest=manifest,
        similar=load_similar(path),
    )


@dataclass(frozen=True)
class SnapshotState:
    """What a request sees: the snapshot in memory (or None) and what is wrong, if anything."""

    snapshot: LoadedSnapshot | None
    problem: str | None = None  # "snapshot missing" when the pointer or files are gone


class SnapshotStore:
    """The live snapshot under ``root``, re-checked at most every ``poll_s`` seconds; with
    ``standby`` (the default), the rollback target kept loaded beside it."""

    def __init__(
        self,
        root: Path | str,
        poll_s: float = 2.0,
        *,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
        loader: Callable[[Path], LoadedSnapshot] = load_snapshot,
        standby: bool = True,
    ) -> None:
        self.root = Path(root)
        self.poll_s = float(poll_s)
        self.background = background
        self._clock = clock
        self._loader = loader
        self._snapshot: LoadedSnapshot | None = None
        self._keep_standby = standby
        self._standby: LoadedSnapshot | None = None
        self._standby_started = False
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
        live = self._snapshot
        if version is None:
            self._set_problem(SNAPSHOT_MISSING if live is None else SNAPSHOT_DETACHED)
            return
        if live is not None and live.version == version:
            self._set_problem(None if (live.path / MANIFEST).is_file() else SNAPSHOT_DETACHED)
            return
        standby = self._standby
        if standby is not None and standby.version == version:
            if (standby.path / MANIFEST).is_file():
                self._swap(standby)  # a rollback (or the roll forward after it): nothing to load
                log.info("serving snapshot %s (kept loaded beside %s)", version, live.version if live else None)
                return
            self._standby = None  # its files are gone: load it like any other (and fail)
        if version in self._failed:
            self._problem = None if live is not None else SNAPSHOT_MISSING
            return
        if self.background and not synchronous:
            self._start_background_load(version)
        else:
            self._load(version)

    def _set_problem(self, problem: str | None) -> None:
        if problem != self._problem and problem is not None:
            log.error("snapshot %s under %s: %s", self.version, self.root, problem)
        elif problem is None and self._problem == SNAPSHOT_DETACHED:
            log.warning("snapshot %s is back on disk under %s", self.version, self.root)
        self._problem = problem

    def _start_background_load(self, version: str) -> None:
        with self._lock:
            if self._loading is not None:
                return
            self._loading = version
        threading.Thread(target=self._load, args=(version,), name=f"snapshot-load-{version}", daemon=True).start()

    def _load(self, version: str) -> None:
        try:
            snapshot = self._loader(self.root / version)
        except SnapshotUnavailable as exc:  # not remembered as failed: the next poll tries again
            log.warning("snapshot %s not loaded yet, keeping %s: %s", version, self.version, exc)
            self._problem = None if self._snapshot is not None else SNAPSHOT_MISSING
        except (SnapshotError, OSError, ValueError, KeyError) as exc:
            log.error("snapshot %s cannot be loaded, keeping %s: %s", version, self.version, exc)
            self._failed.add(version)
            self._problem = None if self._snapshot is not None else SNAPSHOT_MISSING
        else:
            self._swap(snapshot)
            log.info("serving snapshot %s (%d pages)", snapshot.version, len(snapshot.pages))
            self._prepare_standby()
        finally:
            with self._lock:
                if self._loading == version:
                    self._loading = None

    def _swap(self, snapshot: LoadedSnapshot) -> None:
        """``snapshot`` goes live (one reference assignment); the one it replaces becomes the standby."""
        with self._lock:
            old = self._snapshot
            self._snapshot = snapshot  # the atomic swap
            self._problem = None
            if not self._keep_standby:
                return
            if old is not None and old.version != snapshot.version:
                self._standby = old
            elif self._standby is not None and self._standby.version == snapshot.version:
                self._standby = None

    def _prepare_standby(self) -> None:
        """Once, after the first snapshot goes live: load the version a rollback would go to (in the
        background unless the store is synchronous); a failure only costs the rollback its speed."""
        live = self._snapshot
        with self._lock:
            if not self._keep_standby or self._standby_started or live is None or self._standby is not None:
                return
            self._standby_started = True
        target = previous_version(list_versions(self.root), live.version)
        if target is None:
            return
        if self.background:
            threading.Thread(target=self._load_standby, args=(target,), name=f"snapshot-standby-{target}",
                             daemon=True).start()
        else:
            self._load_standby(target)

    def _load_standby(self, version: str) -> None:
        try:
            snapshot = self._loader(self.root / version)
        except (SnapshotError, OSError, ValueError, KeyError) as exc:
            log.warning("snapshot %s not kept loaded for a rollback: %s", version, exc)
            return
        with self._lock:
            live = self._snapshot
            if snapshot.version == version and self._standby is None and live is not None and live.version != version:
                self._standby = snapshot

    @property
    def standby_version(self) -> str | None:
        """The version kept loaded for a rollback (None: none, or still loading)."""
        return self._standby.version if self._standby is not None else None

    @property
    def version(self) -> str | None:
        return self._snapshot.version if self._snapshot is not None else None
