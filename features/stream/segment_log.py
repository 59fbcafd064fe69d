"""The embedded event stream: an fsynced append-only segment log on local disk, no server.

Layout under ``directory``::

    segments/<first seq, 20 digits>.seg   records, appended; a new segment past ``segment_bytes``
    groups/<group>.commits                the group's commits: <next seq u64><crc32 u32> appended, fsynced
    WRITER.lock                           flock held by the one process that appends

A record is ``<length u32><crc32 u32><seq u64><id length u16><event id><payload>``: the crc covers
seq, id and payload, so a torn tail (a crash in the middle of a write) is recognised. The writer
truncates it when it opens the log; readers stop before it and see the records written after the
recovery. ``append`` writes all records of a call with one ``write`` and returns once an
``fsync`` covers them (group commit: concurrent appends share one fsync). Positions are sequence numbers (as strings).

One process appends (the flock enforces it; use Redis for several API processes); each group is
read by one consumer at a time; ``groups`` named at construction exist from the start, so the
backlog of a consumer that has not run yet still counts toward ``max_backlog_events``. Segments every group has committed past, older than
``retention_hours``, are deleted when the writer starts a new segment.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from features.stream.base import Appended, StreamEntry, StreamFull, StreamUnavailable, decode_event, encode_event
from features.stream.records import (
    HEADER,
    append_commit,
    encode_record,
    parse_records,
    read_commit,
)
from pathways.snapshot import fsync_dir

READ_CHUNK = 1 << 22


@dataclass
class _Cursor:
    """Where the next record ``seq`` starts: in segment ``first`` (its first seq), at byte ``offset``."""

    seq: int
    first: int
    offset: int


class SegmentLog:
    """``EventStream`` over segment files in ``directory`` (see the module docstring)."""

    def __init__(
        self,
        directory: Path | str,
        segment_bytes: int = 64 * 2**20,
        max_backlog_events: int = 5_000_000,
        dedupe_window_events: int = 500_000,
        retention_hours: float = 72.0,
        groups: Sequence[str] = (),
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_backlog_events = max_backlog_events
        self.dedupe_window_events = dedupe_window_events
        self.retention_s = retention_hours * 3600.0
        self.segments_dir = self.directory / "segments"
        self.groups_dir = self.directory / "groups"
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.groups_dir.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._synced_cv = threading.Condition()
        self._written = 0  # bytes written by this process (all segments) ...
        self._synced = 0  # ... and how many of them are known to be fsynced
        self._syncing = False
        self._read_lock = threading.Lock()
        self._writer: BinaryIO | None = None
        self._lock_fd: int | None = None
        self._next_seq = 0
        self._segment_first = 0
        self._segment_size = 0
        self._recent: OrderedDict[str, int] = OrderedDict()
        self._cursors: dict[str, _Cursor] = {}
        self._head = _Cursor(0, 0, 0)
        self._committed_cache: tuple[float, int | None] = (0.0, None)
        for group in groups:  # known from the start: their backlog counts before they first read
            self.committed(group)

    # ------------------------------------------------------------------ segments
    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.segments_dir.glob("*.seg"))

    def _path(self, first: int) -> Path:
        return self.segments_dir / f"{first:020d}.seg"

    # ------------------------------------------------------------------ writing
    def _open_writer(self) -> None:
        """Take the writer lock, cut a torn tail off the last segment, rebuild the recent-id index."""
        fd = os.open(self.directory / "WRITER.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StreamUnavailable(f"another process is appending to {self.directory}") from None
        self._lock_fd = fd
        segments = self._segments() or [0]
        last = segments[-1]
        path = self._path(last)
        buf = path.read_bytes() if path.exists() else b""
        records, end = parse_records(buf)
        if end < len(buf):
            with open(path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        self._segment_first, self._segment_size = last, end
        self._next_seq = records[-1][0] + 1 if records else last
        self._rebuild_recent(segments, {last: records})
        self._writer = open(path, "ab")
        fsync_dir(self.segments_dir)

    def _rebuild_recent(self, segments: list[int], cached: dict[int, list[tuple[int, str, bytes]]]) -> None:
        want = self.dedupe_window_events
        chunks: list[list[tuple[int, str, bytes]]] = []
        have = 0
        for first in reversed(segments):
            if have >= want:
                break
            records = cached.get(first)
            if records is None:
                records = parse_records(self._path(first).read_bytes())[0]
            chunks.append(records)
            have += len(records)
        self._recent.clear()
        for records in reversed(chunks):
            for seq, eid, _ in records:
                self._remember(eid, seq)

    def _remember(self, event_id: str, seq: int) -> None:
        if self.dedupe_window_events <= 0:
            return
        self._recent[event_id] = seq
        if len(self._recent) > self.dedupe_window_events:
            self._recent.popitem(last=False)

    def append(self, events: Sequence[Mapping[str, Any]]) -> list[Appended]:
        payloads = [(str(e["event_id"]), encode_event(e)) for e in events]
        with self._write_lock:
            if self._writer is None:
                self._open_writer()
            backlog = self._next_seq - self._min_committed(default=self._next_seq)
            if backlog + len(events) > self.max_backlog_events:
                raise StreamFull(f"{backlog} events not yet consumed (limit {self.max_backlog_events})")
            out: list[Appended] = []
            parts: list[bytes] = []
            new: dict[str, int] = {}
            seq = self._next_seq
            for eid, payload in payloads:
                known = new.get(eid, self._recent.get(eid))
                if known is not None:
                    out.append(Appended(eid, str(known), duplicate=True))
                    continue
                parts.append(encode_record(seq, eid, payload))
                new[eid] = seq
                out.append(Appended(eid, str(seq)))
                seq += 1
            if not parts:
                return out
            target = self._write(b"".join(parts), seq)
            for eid, s in new.items():
                self._remember(eid, s)
        self._sync(target)
        return out

    def _write(self, data: bytes, next_seq: int) -> int:
        """Write ``data`` (not yet durable: see ``_sync``); returns the byte count it must be synced to."""
        assert self._writer is not None
        if self._segment_size and self._segment_size + len(data) > self.segment_bytes:
            self._roll()
        try:
            self._writer.write(data)
            self._writer.flush()
        except OSError as exc:  # a partial write is a torn tail: reopening cuts it
            self._drop_writer()
            raise StreamUnavailable(f"cannot write the event log: {exc}") from exc
        self._segment_size += len(data)
        self._next_seq = next_seq
        self._written += len(data)
        return self._written

    def _sync(self, target: int) -> None:
        """Group commit: return once the log is fsynced past byte ``target``; one caller fsyncs for
        everyone who wrote before it started, the others wait for it."""
        with self._synced_cv:
            while self._synced < target:
                if self._syncing:
                    self._synced_cv.wait()
                    continue
                self._syncing = True
                goal, writer = self._written, self._writer
                self._synced_cv.release()
                error: Exception | None = None
                try:
                    os.fsync(writer.fileno()) if writer is not None else None
                except (OSError, ValueError) as exc:  # ValueError: closed by a roll, which fsynced it
                    error = exc
                finally:
                    self._synced_cv.acquire()
                    self._syncing = False
                    self._synced_cv.notify_all()
                if error is None and writer is not None:
                    self._synced = max(self._synced, goal)
                elif self._synced < target:
                    raise StreamUnavailable(f"cannot fsync the event log: {error or 'closed'}")

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _roll(self) -> None:
        assert self._writer is not None
        self._writer.flush()
        os.fsync(self._writer.fileno())  # the old segment is whole and durable before the next opens
        with self._synced_cv:
            self._synced = max(self._synced, self._written)
        self._writer.close()
        self._segment_first, self._segment_size = self._next_seq, 0
        self._writer = open(self._path(self._next_seq), "ab")
        fsync_dir(self.segments_dir)
        self._drop_old_segments()

    def _drop_old_segments(self) -> None:
        committed = self._min_committed(default=0, fresh=True)
        segments = self._segments()
        now = time.time()
        for first, following in zip(segments, segments[1:]):
            path = self._path(first)
            if following <= committed and now - path.stat().st_mtime > self.retention_s:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ groups
    def _group_path(self, group: str) -> Path:
        if not group or "/" in group or group.startswith("."):
            raise ValueError(f"invalid group name {group!r}")
        return self.groups_dir / f"{group}.commits"

    def committed(self, group: str) -> int:
        """The next seq ``group`` will read after a restart (its group file, created at the log's start)."""
        path = self._group_path(group)
        if not path.exists():
            segments = self._segments()
            append_commit(path, segments[0] if segments else 0)
        value = read_commit(path)
        if value is None:
            raise StreamUnavailable(f"commit file {path} holds no intact record")
        return value

    def _min_committed(self, default: int, fresh: bool = False) -> int:
        stamp, value = self._committed_cache
        if fresh or value is None or time.monotonic() - stamp > 1.0:
            values = [v for p in self.groups_dir.glob("*.commits") if (v := read_commit(p)) is not None]
            value = min(values) if values else None
            self._committed_cache = (time.monotonic(), value)
        return default if value is None else value

    def commit(self, group: str, positions: Sequence[str]) -> None:
        if not positions:
            return
        nxt = max(int(p) for p in positions) + 1
        if nxt > self.committed(group):
            append_commit(self._group_path(group), nxt)

    def lag(self, group: str) -> int:
        with self._read_lock:
            head = self._scan_to_end()
        return max(0, head - self.committed(group))

    # ------------------------------------------------------------------ reading
    def _locate(self, seq: int) -> _Cursor:
        """A cursor at record ``seq`` (or the first one after it that exists)."""
        segments = self._segments()
        if not segments:
            return _Cursor(seq, seq, 0)
        first = segments[0]
        for s in segments:
            if s <= seq:
                first = s
        if seq < first:
            return _Cursor(first, first, 0)
        buf = self._path(first).read_bytes()
        records, end = parse_records(buf)
        offset = 0
        for rseq, eid, payload in records:
            if rseq >= seq:
                return _Cursor(rseq, first, offset)
            offset += HEADER.size + len(eid.encode()) + len(payload)
        return _Cursor(records[-1][0] + 1 if records else first, first, end)

    def _read_from(self, cursor: _Cursor, max_count: int) -> tuple[list[tuple[int, str, bytes]], _Cursor]:
        """Up to ``max_count`` records from ``cursor``, moving to the next segment at a segment's end."""
        out: list[tuple[int, str, bytes]] = []
        while len(out) < max_count:
            path = self._path(cursor.first)
            try:
                with open(path, "rb") as fh:
                    fh.seek(cursor.offset)
                    buf = fh.read(READ_CHUNK)
            except FileNotFoundError:
                buf = b""
            records, used = parse_records(buf)
            if records:
                records = records[: max_count - len(out)]
                used = sum(HEADER.size + len(e.encode()) + len(p) for _, e, p in records)
                out.extend(records)
                cursor = _Cursor(records[-1][0] + 1, cursor.first, cursor.offset + used)
                continue
            later = [s for s in self._segments() if s > cursor.first]
            if not later or later[0] != cursor.seq:
                break  # at the head (or before a torn tail the writer will cut)
            cursor = _Cursor(cursor.seq, later[0], 0)
        return out, cursor

    def _scan_to_end(self) -> int:
        """The seq after the last valid record (cached progress, so repeated calls are cheap)."""
        if self._head.seq == 0 and self._head.offset == 0:
            segments = self._segments()
            self._head = _Cursor(segments[-1], segments[-1], 0) if segments else self._head
        while True:
            records, self._head = self._read_from(self._head, 100_000)
            if not records:
                return self._head.seq

    def read(self, group: str, consumer: str, max_count: int, block_s: float = 0.0) -> list[StreamEntry]:
        deadline = time.monotonic() + block_s
        while True:
            with self._read_lock:
                cursor = self._cursors.get(group) or self._locate(self.committed(group))
                records, self._cursors[group] = self._read_from(cursor, max_count)
            if records or time.monotonic() >= deadline:
                return [StreamEntry(str(seq), decode_event(payload)) for seq, _, payload in records]
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def rewind(self, group: str) -> None:
        """Forget the in-memory read position of ``group``: the next read starts at its commit."""
        with self._read_lock:
            self._cursors.pop(group, None)

    def replay(self, positions: Sequence[str]) -> list[StreamEntry]:
        if not positions:
            return []
        seqs = sorted(int(p) for p in positions)
        with self._read_lock:
            records, _ = self._read_from(self._locate(seqs[0]), seqs[-1] - seqs[0] + 1)
        wanted = set(seqs)
        return [StreamEntry(str(seq), decode_event(p)) for seq, _, p in records if seq in wanted]

    def close(self) -> None:
        with self._write_lock:
            self._drop_writer()
