"""The nightly's incremental ingest: only files not ingested before, a bad file set aside.

``ingest_new(files, titles, profiles, lake_dir)`` remembers in ``lake_dir/ingest_state.json``
each file it has ingested (path, size, modification time): on the next night those are skipped
without being read or hashed, so the work is the new files only. Duplicates are checked with one
bounded ``EventIdIndex`` shared by the night's files (the days the new events fall on, not the
whole lake). A file that cannot be read as events (not Parquet, missing or unknown columns) is
moved to ``lake_dir/rejected/`` with a ``.report.json`` saying why, and the night goes on.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from features.ingest import IngestError, ingest
from features.lake_index import EventIdIndex

STATE_FILE = "ingest_state.json"


def _key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, path)


def set_aside(path: Path, rejected_dir: Path, error: str) -> Path:
    """Move ``path`` into ``rejected_dir`` (a unique name) with a report beside it; returns the new path."""
    rejected_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = rejected_dir / f"{stamp}-{path.name}"
    shutil.move(str(path), target)
    report = {"file": str(path), "moved_to": str(target), "error": error, "at": datetime.now(UTC).isoformat()}
    target.with_name(target.name + ".report.json").write_text(json.dumps(report, indent=1))
    return target


def ingest_new(
    files: Iterable[Path],
    titles: pa.Table,
    profiles: pa.Table,
    lake_dir: Path | str,
    now: datetime | None = None,
    dedupe_days: int = 1,
) -> dict[str, Any]:
    """Ingest the files of ``files`` not ingested before; returns the night's totals:
    rows_in, accepted, quarantined, by_reason, files (new ones read), already_ingested (skipped)
    and rejected_files (moved aside, with their reports' paths in ``rejected``)."""
    lake_dir = Path(lake_dir)
    lake_dir.mkdir(parents=True, exist_ok=True)
    state_path = lake_dir / STATE_FILE
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {"files": {}}
    index = EventIdIndex(lake_dir, dedupe_days=dedupe_days)
    totals: dict[str, Any] = {"rows_in": 0, "accepted": 0, "quarantined": 0, "files": 0, "already_ingested": 0,
                              "rejected_files": 0, "by_reason": {}, "rejected": []}
    for path in files:
        path = Path(path)
        key = _key(path)
        if state["files"].get(str(path)) == key:
            totals["already_ingested"] += 1
            continue
        try:
            report = ingest(path, titles, profiles, lake_dir, now=now, index=index)
        except IngestError as exc:
            moved = set_aside(path, lake_dir / "rejected", str(exc))
            totals["rejected_files"] += 1
            totals["rejected"].append(str(moved))
            continue
        totals["files"] += 1
        if report.already_ingested:
            totals["already_ingested"] += 1
        else:
            for name in ("rows_in", "accepted", "quarantined"):
                totals[name] += getattr(report, name)
            for reason, n in report.by_reason.items():
                totals["by_reason"][reason] = totals["by_reason"].get(reason, 0) + n
        state["files"][str(path)] = key
        _save_state(state_path, state)
    if totals["rows_in"] != totals["accepted"] + totals["quarantined"]:
        raise RuntimeError(f"event accounting does not balance: {totals}")
    return totals
