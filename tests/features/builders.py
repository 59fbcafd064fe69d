"""Tiny hand-built events and profiles for the feature tests (titles come from tests/conftest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def make_profiles() -> pa.Table:
    """Profiles 1..6: 1-3 in US, 4-5 in BR, 6 a kids profile in GB."""
    rows = [
        {
            "profile_id": pid,
            "account_id": 10 + (pid - 1) // 2,
            "is_kids": pid == 6,
            "region": "US" if pid <= 3 else ("BR" if pid <= 5 else "GB"),
            "max_maturity_level": 1 if pid == 6 else 4,
            "devices": ["tv"],
            "created_at": T0 - timedelta(days=30),
        }
        for pid in range(1, 7)
    ]
    return pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA)


def event(n: int, event_type: str, profile_id: int, title_id: int | None, hours: float, **kw: Any) -> dict[str, Any]:
    """One event row ``n`` at ``T0 + hours``; keyword arguments fill the other columns."""
    row: dict[str, Any] = {f.name: None for f in EVENT_SCHEMA}
    row.update(
        event_id=f"e{n}",
        event_type=event_type,
        ts=T0 + timedelta(hours=hours),
        profile_id=profile_id,
        title_id=title_id,
        session_id=f"s{profile_id}-{int(hours // 6)}",
        device="tv",
    )
    row.update(kw)
    return row


def events_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
