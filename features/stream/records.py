"""The segment log's on-disk formats: event records with a crc, and fsynced group-commit files.

A record is ``<length u32><crc32 u32><seq u64><id length u16><event id><payload>``; the crc covers
seq, id and payload, so a torn tail is recognised (``parse_records`` stops before it). A commit
file holds ``<next seq u64><crc32 u32>`` records, appended and fsynced, rewritten atomically when long.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from pathways.snapshot import fsync_dir

HEADER = struct.Struct("<IIQH")  # payload length, crc32, seq, id length


COMMIT = struct.Struct("<QI")  # next seq, crc32 of it
COMPACT_BYTES = 1 << 16


def read_commit(path: Path) -> int | None:
    """The last intact commit record of ``path`` (a torn last record is skipped), or None."""
    data = path.read_bytes()
    for end in range(len(data) - len(data) % COMMIT.size, 0, -COMMIT.size):
        nxt, crc = COMMIT.unpack_from(data, end - COMMIT.size)
        if zlib.crc32(struct.pack("<Q", nxt)) == crc:
            return int(nxt)
    return None


def append_commit(path: Path, nxt: int) -> None:
    """Append one commit record and fsync it; a long file is rewritten as one record, atomically."""
    record = COMMIT.pack(nxt, zlib.crc32(struct.pack("<Q", nxt)))
    size = path.stat().st_size if path.exists() else COMPACT_BYTES
    if size < COMPACT_BYTES:
        with open(path, "r+b") as fh:
            fh.seek(size - size % COMMIT.size)  # over a torn last record, if a crash left one
            fh.write(record)
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(record)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def parse_records(buf: bytes, start: int = 0) -> tuple[list[tuple[int, str, bytes]], int]:
    """Valid records of ``buf`` from byte ``start``: [(seq, event id, payload)] and where they end
    (the first incomplete or corrupt record, or the end of ``buf``)."""
    out: list[tuple[int, str, bytes]] = []
    pos, n = start, len(buf)
    while pos + HEADER.size <= n:
        length, crc, seq, id_len = HEADER.unpack_from(buf, pos)
        end = pos + HEADER.size + id_len + length
        if end > n:
            break
        body = buf[pos + 8 : end]  # seq, id length, id, payload
        if zlib.crc32(body) != crc:
            break
        id_start = pos + HEADER.size
        out.append((seq, buf[id_start : id_start + id_len].decode(), buf[id_start + id_len : end]))
        pos = end
    return out, pos


def encode_record(seq: int, event_id: str, payload: bytes) -> bytes:
    eid = event_id.encode()
    body = struct.pack("<QH", seq, len(eid)) + eid + payload
    return struct.pack("<II", len(payload), zlib.crc32(body)) + body
