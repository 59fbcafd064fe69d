"""The page store: each profile's published page as bytes, read one profile at a time by serving.

Two backends behind one interface, so a serving replica's memory does not grow with profiles:

| backend | where pages live | how a version goes live | rollback |
| --- | --- | --- | --- |
| ``SqlitePageStore`` (embedded default) | ``<snapshot dir>/pages.sqlite``, one file per snapshot | the snapshot's ``CURRENT`` switch | switch ``CURRENT`` back |
| ``RedisPageStore`` (production) | keys ``<prefix>:<version>:<profile_id>`` | ``SET <prefix>:current <version>`` (one atomic write) | ``activate(previous)`` |

Writers take pages in blocks (``put_many``), so the nightly job streams them and never holds a
whole run in memory. A Redis version is written completely (its ``:complete`` marker last)
before ``activate`` accepts it; older versions stay for rollback until ``prune``. Readers answer
``get(profile_id) -> bytes | None`` (None: no page for that profile in this version) and raise
``PageStoreUnavailable`` when the backend cannot be reached, so serving can fall back.
Costs: a write is O(pages) with memory O(block); a read is one indexed lookup (SQLite) or one
round trip (Redis, a Lua script follows the pointer and fetches the page atomically).

Profile records (``pathways.profilerecords``: region, maturity ceiling, kids, account) live in the
same store, so serving holds nothing per profile: SQLite tables ``profiles`` (``profile_id``
primary key, region as a code) and ``profile_regions`` (code -> name), written at publish by
``write_profiles``; Redis keys ``<prefix>:<version>:p:<profile_id>`` (12 bytes each) and
``<prefix>:<version>:profiles`` (region names and count), written with the pages before the
``:complete`` marker and deleted with the version. Readers answer ``profile(profile_id) ->
ProfileRecord | None`` (one indexed lookup / one round trip) and ``profile_count() -> int | None``
(None: a version written before records were stored; serving then reads ``profiles.parquet``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from pathways.profilerecords import (
    ProfileRecord,
    RecordRow,
    fsync_file,
    has_profiles,
    pack_record,
    to_record,
    unpack_record,
)

PAGES_SQLITE = "pages.sqlite"


class PageStoreUnavailable(RuntimeError):
    """The page store cannot be read or written right now (file missing, Redis down)."""


class PageWriter(Protocol):
    def put_many(self, pages: Iterable[tuple[int, bytes]]) -> None: ...

    def close(self) -> int:
        """Finish the version (durable, complete); returns how many pages it holds."""
        ...


class PageReader(Protocol):
    version: str

    def get(self, profile_id: int) -> bytes | None: ...

    def profile(self, profile_id: int) -> ProfileRecord | None: ...

    def profile_count(self) -> int | None: ...

    def close(self) -> None: ...


class SqlitePageStore:
    """Pages of one snapshot in ``<snapshot_dir>/pages.sqlite`` (``profile_id INTEGER PRIMARY KEY``)."""

    def writer(self, snapshot_dir: Path, resumable: bool = False) -> SqlitePageWriter:
        return SqlitePageWriter(Path(snapshot_dir) / PAGES_SQLITE, resumable)

    def reader(self, snapshot_dir: Path, version: str) -> SqlitePageReader:
        return SqlitePageReader(Path(snapshot_dir) / PAGES_SQLITE, version)


class SqlitePageWriter:
    """Writes one snapshot's pages; ``close()`` commits and returns the count.

    ``resumable=False`` (a snapshot being staged): a half-written file is replaced, one
    transaction, no journal. ``resumable=True`` (the nightly's work file): an existing file is
    kept, each ``put_many`` block is its own durable transaction (WAL), and ``profile_ids()``
    says which profiles are done, so a killed run resumes at the first missing block.
    """

    def __init__(self, path: Path, resumable: bool = False) -> None:
        if not resumable:
            path.unlink(missing_ok=True)  # a half-written file from an interrupted run
        self.path = path
        self.resumable = resumable
        self._db = sqlite3.connect(path)
        pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" if resumable else (
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        self._db.executescript(
            pragmas + "CREATE TABLE IF NOT EXISTS pages "
            "(profile_id INTEGER PRIMARY KEY, page BLOB NOT NULL) WITHOUT ROWID;"
        )

    def put_many(self, pages: Iterable[tuple[int, bytes]]) -> None:
        self._db.executemany("INSERT INTO pages VALUES (?, ?)", ((int(p), bytes(b)) for p, b in pages))
        if self.resumable:
            self._db.commit()

    def release(self) -> None:
        """Close without finishing (an interrupted build): committed blocks stay for a resume."""
        self._db.close()

    def profile_ids(self) -> set[int]:
        """Profiles already written (committed blocks)."""
        return {int(p) for (p,) in self._db.execute("SELECT profile_id FROM pages")}

    def close(self) -> int:
        self._db.commit()
        (count,) = self._db.execute("SELECT count(*) FROM pages").fetchone()
        if self.resumable:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        fsync_file(self.path)
        return int(count)


class SqlitePageReader:
    """Read-only, immutable access to one snapshot's pages through one connection opened at once.

    The connection holds the file open, so the reader keeps working when the snapshot's files are
    removed or renamed under it (the data stays until the last handle closes). Threads share the
    connection under a lock: a lookup holds it ~10 us.
    """

    def __init__(self, path: Path, version: str) -> None:
        if not path.is_file():
            raise PageStoreUnavailable(f"page file missing: {path}")
        self.path = path
        self.version = version
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self._db.execute("SELECT 1 FROM pages LIMIT 1").fetchall()  # opens the file now, not at the first read
            self._regions = [str(n) for (n,) in self._db.execute(
                "SELECT name FROM profile_regions ORDER BY code")] if has_profiles(self._db) else None
        except sqlite3.Error as exc:
            raise PageStoreUnavailable(f"reading {path}: {exc}") from exc

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise PageStoreUnavailable(f"reading {self.path}: {exc}") from exc

    def get(self, profile_id: int) -> bytes | None:
        row = self._one("SELECT page FROM pages WHERE profile_id = ?", (int(profile_id),))
        return None if row is None else bytes(row[0])

    def profile(self, profile_id: int) -> ProfileRecord | None:
        """The record of ``profile_id`` (None: not in this snapshot, or no records stored)."""
        if self._regions is None:
            return None
        row = self._one("SELECT region, maturity, kids, account_id FROM profiles WHERE profile_id = ?",
                        (int(profile_id),))
        return None if row is None else to_record(self._regions, *row)

    def profile_count(self) -> int | None:
        """How many profile records (None: a file written before records were stored)."""
        return None if self._regions is None else int(self._one("SELECT count(*) FROM profiles")[0])

    def __len__(self) -> int:
        return int(self._one("SELECT count(*) FROM pages")[0])

    def sample(self) -> bytes | None:
        """Any one page (None when there are none): a format check at open."""
        row = self._one("SELECT page FROM pages LIMIT 1")
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# Follows the pointer and fetches the page in one round trip: KEYS[1] = pointer, ARGV[1] = prefix,
# ARGV[2] = profile id. Returns {version, page or false}.
_GET_LIVE = """
local v = redis.call('GET', KEYS[1])
if not v then return {false, false} end
return {v, redis.call('GET', ARGV[1] .. ':' .. v .. ':' .. ARGV[2])}
"""


class RedisPageStore:
    """Versioned pages in Redis with one ``current`` pointer; ``client`` is a ``redis.Redis``."""

    def __init__(self, client: Any, prefix: str = "pathways:pages") -> None:
        self.client = client
        self.prefix = prefix
        self.pointer = f"{prefix}:current"
        self.versions_key = f"{prefix}:versions"  # sorted set: version -> time it was completed
        self._get_live = client.register_script(_GET_LIVE)

    @classmethod
    def from_url(cls, connection: str, prefix: str = "pathways:pages", timeout_s: float = 0.05) -> RedisPageStore:
        """``host:port`` or a ``redis://`` URL, with short socket timeouts for serving."""
        import redis

        url = connection if "://" in connection else f"redis://{connection}"
        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s), prefix)

    def _call(self, fn: Any, *args: Any) -> Any:
        import redis

        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise PageStoreUnavailable(f"redis: {exc}") from exc

    def writer(self, version: str, block: int = 1000) -> RedisPageWriter:
        return RedisPageWriter(self, version, block)

    def is_complete(self, version: str) -> bool:
        return bool(self._call(self.client.exists, f"{self.prefix}:{version}:complete"))

    def activate(self, version: str) -> None:
        """Make ``version`` live (one atomic SET); refused unless it was written completely."""
        if not self.is_complete(version):
            raise ValueError(f"page store version {version} is not complete; refusing to activate it")
        self._call(self.client.set, self.pointer, version)

    def current(self) -> str | None:
        value = self._call(self.client.get, self.pointer)
        return None if value is None else value.decode()

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        return [v.decode() for v in self._call(self.client.zrange, self.versions_key, 0, -1)]

    def get_live(self, profile_id: int) -> tuple[str | None, bytes | None]:
        """(live version, its page for ``profile_id``), in one round trip."""
        version, page = self._call(self._get_live, [self.pointer], [self.prefix, int(profile_id)])
        return (None if not version else version.decode()), (page or None)

    def reader(self, version: str | None = None) -> RedisPageReader:
        return RedisPageReader(self, version)

    def delete(self, version: str, batch: int = 1000) -> int:
        """Remove every key of ``version`` (never the live one); returns keys removed."""
        if version == self.current():
            raise ValueError(f"refusing to delete the live page store version {version}")
        removed = 0
        keys: list[bytes] = []
        for key in self.client.scan_iter(match=f"{self.prefix}:{version}:*", count=batch):
            keys.append(key)
            if len(keys) >= batch:
                removed += int(self._call(self.client.unlink, *keys))
                keys = []
        if keys:
            removed += int(self._call(self.client.unlink, *keys))
        self._call(self.client.zrem, self.versions_key, version)
        return removed

    def prune(self, keep: int, retention_s: float, now: float | None = None) -> list[str]:
        """Delete complete versions beyond the newest ``keep`` that are older than ``retention_s``."""
        now = time.time() if now is None else now
        live = self.current()
        entries = self._call(self.client.zrange, self.versions_key, 0, -1, False, True)  # (version, completed_at)
        stale = [v.decode() for v, at in entries[: max(0, len(entries) - keep)] if now - at > retention_s]
        stale = [v for v in stale if v != live]
        for version in stale:
            self.delete(version)
        return stale


class RedisPageWriter:
    """Writes one version's pages in pipelined blocks; ``close()`` marks it complete."""

    def __init__(self, store: RedisPageStore, version: str, block: int) -> None:
        self.store = store
        self.version = version
        self.block = block
        self.count = 0

    def put_many(self, pages: Iterable[tuple[int, bytes]]) -> None:
        prefix = f"{self.store.prefix}:{self.version}"
        pipe = self.store.client.pipeline(transaction=False)
        pending = 0
        for profile_id, page in pages:
            pipe.set(f"{prefix}:{int(profile_id)}", bytes(page))
            pending += 1
            if pending >= self.block:
                self.store._call(pipe.execute)
                self.count += pending
                pending = 0
        if pending:
            self.store._call(pipe.execute)
            self.count += pending

    def put_profiles(self, regions: list[str], rows: Iterable[list[RecordRow]]) -> int:
        """The version's profile records (before ``close``): one key each, then the names and count."""
        prefix = f"{self.store.prefix}:{self.version}"
        count = 0
        for block in rows:
            pipe = self.store.client.pipeline(transaction=False)
            for row in block:
                pipe.set(f"{prefix}:p:{int(row[0])}", pack_record(row))
            self.store._call(pipe.execute)
            count += len(block)
        self.store._call(self.store.client.set, f"{prefix}:profiles", json.dumps({"regions": regions, "count": count}))
        return count

    def close(self) -> int:
        prefix = f"{self.store.prefix}:{self.version}"
        pipe = self.store.client.pipeline(transaction=True)
        pipe.set(f"{prefix}:complete", str(self.count))
        pipe.zadd(self.store.versions_key, {self.version: time.time()})
        self.store._call(pipe.execute)
        return self.count


class RedisPageReader:
    """Reads through the live pointer (``version=None``) or from one fixed version."""

    def __init__(self, store: RedisPageStore, version: str | None) -> None:
        self.store = store
        self.fixed = version
        self.version = version or (store.current() or "")
        self._meta: dict[str, Any] | None = None  # the fixed version's profile names and count, once read

    def get(self, profile_id: int) -> bytes | None:
        if self.fixed is not None:
            value = self.store._call(self.store.client.get, f"{self.store.prefix}:{self.fixed}:{int(profile_id)}")
            return None if value is None else bytes(value)
        version, page = self.store.get_live(profile_id)
        self.version = version or ""
        return page

    def _profiles_meta(self) -> dict[str, Any] | None:
        if self.fixed is None:
            raise ValueError("profile records are read from a fixed version (reader(version))")
        if self._meta is None:
            raw = self.store._call(self.store.client.get, f"{self.store.prefix}:{self.fixed}:profiles")
            self._meta = {} if raw is None else json.loads(raw)
        return self._meta or None

    def profile(self, profile_id: int) -> ProfileRecord | None:
        """The record of ``profile_id`` in the fixed version: one round trip (None: not there)."""
        meta = self._profiles_meta()
        if meta is None:
            return None
        value = self.store._call(self.store.client.get, f"{self.store.prefix}:{self.fixed}:p:{int(profile_id)}")
        return None if value is None else unpack_record(meta["regions"], value)

    def profile_count(self) -> int | None:
        meta = self._profiles_meta()
        return None if meta is None else int(meta["count"])

    def close(self) -> None:
        return None
