"""EventChecker: the profile rule reads one snapshot record per distinct profile, never profiles.parquet."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pathways.snapshot import TITLES
from serving.events import EventChecker

NOW = datetime(2026, 1, 2, tzinfo=UTC)


@dataclass
class FakeSnapshot:
    path: Path
    known: set[int]
    version: str = "v1"
    asked: list[int] = field(default_factory=list)

    def profile_strict(self, profile_id: int) -> object | None:
        self.asked.append(profile_id)
        return object() if profile_id in self.known else None


def row(event_id: str, profile_id: int, title_id: int = 7) -> dict:
    return {"event_id": event_id, "event_type": "play", "profile_id": profile_id, "title_id": title_id,
            "fraction_watched": 0.5, "ts": datetime(2026, 1, 1, tzinfo=UTC), "session_id": "s", "device": "tv"}


def test_profiles_are_checked_by_one_record_read_each(tmp_path: Path) -> None:
    pq.write_table(pa.table({"title_id": pa.array([7], pa.int64()), "artwork_ids": pa.array([[1]], pa.list_(pa.int32()))}),
                   tmp_path / TITLES)
    snap = FakeSnapshot(tmp_path, known={1, 2})  # no profiles.parquet at all: it must not be read
    checker = EventChecker(lambda: snap)
    reasons = checker.reasons([row("a", 1), row("b", 1), row("c", 3), row("d", 2, title_id=8)], NOW)
    assert reasons.tolist() == ["", "", "unknown_profile_id", "unknown_title_id"]
    assert sorted(snap.asked) == [1, 2, 3]  # one read per distinct profile of the request


def test_without_a_snapshot_the_catalog_rules_are_left_to_the_lake_consumer(tmp_path: Path) -> None:
    reasons = EventChecker(lambda: None).reasons([row("a", 99, title_id=99)], NOW)
    assert reasons.tolist() == [""]
