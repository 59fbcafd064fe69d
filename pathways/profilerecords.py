"""Profile records as the page store holds them: region code, maturity ceiling, kids, account per profile.

Serving needs four facts per profile (``ProfileContext``'s region, maturity ceiling, kids flag and
account, the last for access control); the page store keeps them beside the pages so a replica
reads one profile's record per request and holds nothing per profile in memory. A record is a
row ``(profile_id, region_code, max_maturity_level, is_kids, account_id | None)``; the region
names are stored once per version (a tiny table / key), codes index them.

``profile_rows(table)`` turns ``profiles.parquet``'s table into (region names, blocks of rows);
``pack_record``/``unpack_record`` are the 12-byte value a Redis key holds (``<HbBq``: region code,
maturity, kids, account or -1). ``write_profiles``/``read_profiles`` put them into (take them
out of) a snapshot's ``pages.sqlite`` (tables ``profiles`` and ``profile_regions``).
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

COLUMNS = ("profile_id", "region", "max_maturity_level", "is_kids", "account_id")
RecordRow = tuple[int, int, int, int, "int | None"]
_RECORD = struct.Struct("<HbBq")
_PROFILE_TABLES = (
    "DROP TABLE IF EXISTS profiles; DROP TABLE IF EXISTS profile_regions; "
    "CREATE TABLE profile_regions (code INTEGER PRIMARY KEY, name TEXT NOT NULL); "
    "CREATE TABLE profiles (profile_id INTEGER PRIMARY KEY, region INTEGER NOT NULL, maturity INTEGER NOT NULL, "
    "kids INTEGER NOT NULL, account_id INTEGER) WITHOUT ROWID;"
)


class ProfileRecord(NamedTuple):
    """One profile's build-time facts, region already resolved to its name."""

    region: str
    max_maturity_level: int
    is_kids: bool
    account_id: int | None


def profile_rows(table: pa.Table, block: int = 10_000) -> tuple[list[str], Iterator[list[RecordRow]]]:
    """(region names, blocks of record rows) of a profiles table (``COLUMNS`` at least)."""
    table = table.select(list(COLUMNS))
    regions = table.column("region").combine_chunks().dictionary_encode()
    names = [str(n) for n in regions.dictionary.to_pylist()]
    if len(names) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(names)} regions: more than a record's region code holds")
    codes = regions.indices.to_numpy(zero_copy_only=False).astype(np.int64)

    def blocks() -> Iterator[list[RecordRow]]:
        for start in range(0, table.num_rows, block):
            part = table.slice(start, block)
            yield list(zip(
                part.column("profile_id").to_pylist(), codes[start : start + block].tolist(),
                part.column("max_maturity_level").to_pylist(),
                [int(bool(k)) for k in part.column("is_kids").to_pylist()],
                part.column("account_id").to_pylist(), strict=True,
            ))

    return names, blocks()


def to_record(names: Sequence[str], code: int, maturity: int, kids: int, account: int | None) -> ProfileRecord:
    """The ``ProfileRecord`` of one stored row (its region code resolved against ``names``)."""
    return ProfileRecord(names[int(code)], int(maturity), bool(kids), None if account is None else int(account))


def pack_record(row: RecordRow) -> bytes:
    """A row's Redis value (12 bytes; the profile id is in the key)."""
    _, code, maturity, kids, account = row
    return _RECORD.pack(int(code), int(maturity), int(kids), -1 if account is None else int(account))


def unpack_record(names: Sequence[str], value: bytes) -> ProfileRecord:
    code, maturity, kids, account = _RECORD.unpack(value)
    return to_record(names, code, maturity, kids, None if account < 0 else account)


def write_profiles(pages_sqlite: Path, regions: list[str], rows: Iterable[list[RecordRow]]) -> int:
    """Write (replace) the profile records of a staged ``pages.sqlite``; returns how many."""
    db = sqlite3.connect(pages_sqlite)
    try:  # a staged file: an interrupted write is discarded with the staging dir
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _PROFILE_TABLES)
        db.executemany("INSERT INTO profile_regions VALUES (?, ?)", enumerate(regions))
        for block in rows:
            db.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", block)
        db.commit()
        (count,) = db.execute("SELECT count(*) FROM profiles").fetchone()
    finally:
        db.close()
    fsync_file(pages_sqlite)
    return int(count)


def read_profiles(pages_sqlite: Path, batch: int = 1000) -> tuple[list[str], Iterator[list[RecordRow]]] | None:
    """(region names, blocks of record rows in profile id order) of a ``pages.sqlite``; None without records."""
    db = sqlite3.connect(f"file:{pages_sqlite}?mode=ro", uri=True)
    try:
        if not has_profiles(db):
            return None
        names = [str(n) for (n,) in db.execute("SELECT name FROM profile_regions ORDER BY code")]
    finally:
        db.close()

    def blocks() -> Iterator[list[RecordRow]]:
        db = sqlite3.connect(f"file:{pages_sqlite}?mode=ro", uri=True)
        try:
            cursor = db.execute("SELECT * FROM profiles ORDER BY profile_id")
            while block := cursor.fetchmany(batch):
                yield block
        finally:
            db.close()

    return names, blocks()


def fsync_file(path: Path) -> None:
    """Flush ``path`` to disk (durable before the snapshot is published)."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def has_profiles(db: sqlite3.Connection) -> bool:
    """Whether a `pages.sqlite` holds profile records (files written before them do not)."""
    return bool(db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'profile_regions'").fetchone()[0])
