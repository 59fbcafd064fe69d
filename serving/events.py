"""Events arriving over HTTP: validated request models and the durable Parquet landing area.

``EventIn`` mirrors ``features.schema.EVENT_SCHEMA`` (unknown fields are an error; ``event_id``
and ``ts`` may be left out and are filled in). ``HeartbeatIn`` is the body of
``PUT /api/v1/playback/{session_id}/heartbeat``. ``EventLanding.append(rows)`` writes one small
Parquet file in ``EVENT_SCHEMA`` per accepted request under ``data_dir/raw/api/``: written to a
``.tmp`` name, fsynced, then renamed, so the nightly ingest never reads a partial file and an
accepted event is on disk before the response says so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features.schema import EVENT_SCHEMA, EventType

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_EVENTS_PER_REQUEST = 10_000


def _utc(ts: datetime | None) -> datetime:
    if ts is None:
        return datetime.now(UTC)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class EventIn(BaseModel):
    """One event as posted by a client; field meanings as in ``EVENT_SCHEMA``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: str | None = Field(None, min_length=1, max_length=128)
    event_type: EventType
    ts: datetime | None = None  # naive timestamps are read as UTC; missing: the time of receipt
    profile_id: int = Field(ge=0, le=INT64_MAX)
    title_id: int | None = Field(None, ge=0, le=INT64_MAX)
    session_id: str | None = Field(None, max_length=128)
    device: str | None = Field(None, max_length=32)
    row_index: int | None = Field(None, ge=0, le=INT32_MAX)
    position: int | None = Field(None, ge=0, le=INT32_MAX)
    fraction_watched: float | None = Field(None, ge=0.0, le=1.0)
    position_s: float | None = Field(None, ge=0.0)
    rating: float | None = Field(None, ge=0.5, le=5.0)
    query: str | None = Field(None, max_length=512)
    artwork_id: int | None = Field(None, ge=0, le=INT32_MAX)
    propensity: float | None = Field(None, gt=0.0, le=1.0)
    policy_version: str | None = Field(None, max_length=128)

    @model_validator(mode="after")
    def _required_by_type(self) -> "EventIn":
        if self.event_type != EventType.SEARCH and self.title_id is None:
            raise ValueError(f"title_id is required for event_type {self.event_type.value!r}")
        if self.event_type == EventType.RATING and self.rating is None:
            raise ValueError("rating is required for event_type 'rating'")
        if self.event_type == EventType.ARTWORK_IMPRESSION and (self.artwork_id is None or self.propensity is None):
            raise ValueError("artwork_id and propensity are required for event_type 'artwork_impression'")
        return self

    def to_row(self) -> dict[str, Any]:
        """An ``EVENT_SCHEMA`` row, with ``event_id`` and ``ts`` filled in."""
        row = self.model_dump()
        row["event_type"] = self.event_type.value
        row["event_id"] = self.event_id or uuid.uuid4().hex
        row["ts"] = _utc(self.ts)
        return row


class HeartbeatIn(BaseModel):
    """Playback progress: ``position_s`` seconds into ``title_id``; ``completed`` ends it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    profile_id: int = Field(ge=0, le=INT64_MAX)
    title_id: int = Field(ge=0, le=INT64_MAX)
    position_s: float = Field(ge=0.0)
    ts: datetime | None = None
    device: str | None = Field(None, max_length=32)
    completed: bool = False

    def to_rows(self, session_id: str) -> list[dict[str, Any]]:
        """The heartbeat event, plus a ``complete`` event when ``completed`` is set."""
        ts = _utc(self.ts)
        base: dict[str, Any] = {name: None for name in EVENT_SCHEMA.names}
        base.update(profile_id=self.profile_id, title_id=self.title_id, session_id=session_id, device=self.device, ts=ts)
        rows = [{**base, "event_id": uuid.uuid4().hex, "event_type": EventType.HEARTBEAT.value, "position_s": self.position_s}]
        if self.completed:
            rows.append(
                {**base, "event_id": uuid.uuid4().hex, "event_type": EventType.COMPLETE.value,
                 "position_s": self.position_s, "fraction_watched": 1.0}
            )
        return rows


class EventLanding:
    """Append-only landing area of Parquet files in ``EVENT_SCHEMA`` (one file per call)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def append(self, rows: Sequence[dict[str, Any]]) -> Path:
        """Write ``rows`` durably; returns the file. Raises ``OSError`` if the disk refuses."""
        if not rows:
            raise ValueError("rows: nothing to land")
        table = pa.Table.from_pylist(list(rows), schema=EVENT_SCHEMA)
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.directory / f"events-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("events-*.parquet"))
