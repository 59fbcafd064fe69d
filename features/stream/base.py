"""The event stream's interface: ``EventStream``, its entries, its errors and the event codec.

An ``EventStream`` is an append-only log of events (``EVENT_SCHEMA`` dicts) read by consumer
groups. Each group has one committed position; a consumer reads entries after it, writes them
somewhere durable, then commits. A consumer that dies before committing leaves its entries to be
read again (at-least-once delivery); consumers make their writes idempotent by position so that
the accounting is exactly-once by event id (``features/stream/lake.py``).

Positions are opaque strings, ordered within one stream: the segment log uses the record's
sequence number, Redis its stream id, Kafka would use ``partition:offset``.

Event ids deduplicate appends: an id the stream still remembers (``dedupe_window_events``) is not
appended again and comes back as ``duplicate``, so a client retrying a request does not count
its events twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import EVENT_SCHEMA, TS


class StreamUnavailable(RuntimeError):
    """The stream cannot take or give events now (broker down, disk refusing); retry later."""


class StreamFull(StreamUnavailable):
    """The backlog of the slowest consumer group is over ``max_backlog_events``; retry later."""


@dataclass(frozen=True)
class StreamEntry:
    """One event in the stream: where it sits, and the event (an ``EVENT_SCHEMA`` dict, ts in epoch ms)."""

    position: str
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


@dataclass(frozen=True)
class Appended:
    """The outcome of appending one event: its position, or the position it already had."""

    event_id: str
    position: str
    duplicate: bool = False


class EventStream(Protocol):
    """A durable, ordered event log with consumer groups (segment log, Redis Streams, Kafka)."""

    def append(self, events: Sequence[Mapping[str, Any]]) -> list[Appended]:
        """Append ``events`` (each with an ``event_id``) and return once they are durable.

        Raises ``StreamFull`` or ``StreamUnavailable`` (nothing of the call is appended then)."""
        ...

    def read(self, group: str, consumer: str, max_count: int, block_s: float = 0.0) -> list[StreamEntry]:
        """Up to ``max_count`` entries not yet read by ``group`` (after a restart: from its committed
        position), waiting up to ``block_s`` for the first one."""
        ...

    def replay(self, positions: Sequence[str]) -> list[StreamEntry]:
        """The entries at exactly ``positions`` (a crashed consumer redoing an unfinished write)."""
        ...

    def commit(self, group: str, positions: Sequence[str]) -> None:
        """Mark ``positions`` done for ``group`` (durable; a restarted group reads after them)."""
        ...

    def lag(self, group: str) -> int:
        """Entries appended but not yet committed by ``group``."""
        ...

    def rewind(self, group: str) -> None:
        """Read ``group``'s uncommitted entries again from the next ``read`` (after a failed write)."""
        ...

    def close(self) -> None: ...


def encode_event(event: Mapping[str, Any]) -> bytes:
    """An ``EVENT_SCHEMA`` dict as compact JSON (orjson: numpy scalars as numbers, NaN as null);
    ``ts`` (datetime or epoch ms) as epoch ms."""
    row = dict(event)
    ts = row.get("ts")
    if isinstance(ts, datetime):
        ts = ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
        row["ts"] = int(ts.timestamp() * 1000)
    return orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_event(data: bytes | str) -> dict[str, Any]:
    """The dict ``encode_event`` wrote (records of older versions may hold ``NaN``: read by ``json``)."""
    try:
        event: dict[str, Any] = orjson.loads(data)
    except orjson.JSONDecodeError:
        event = json.loads(data)
    return event


_WIRE_SCHEMA = pa.schema([f.with_type(pa.int64()) if f.name == "ts" else f for f in EVENT_SCHEMA])


def entries_table(entries: Sequence[StreamEntry]) -> pa.Table:
    """Entries' events as one table with ``EVENT_SCHEMA`` columns (all nullable), in stream order."""
    nullable = pa.schema([f.with_nullable(True) for f in _WIRE_SCHEMA])
    table = pa.Table.from_pylist([e.event for e in entries], schema=nullable)
    ts = pc.cast(table["ts"], TS)
    return table.set_column(table.schema.get_field_index("ts"), pa.field("ts", TS), ts)
