"""The nightly's incremental ingest: only files not ingested before, a bad file set aside.

``ingest_new(files, titles, profiles, lake_dir)`` remembers in ``lake_dir/ingest_state.json``
each file it has ingested (path, size, modification time): on the next night those are skipped
without being read or hashed, so the work is the new files only. Duplicates are checked with one
bounded ``EventIdIndex`` shared by the night's files (the days the new events fall on, not the
whole lake). A file that cannot be read as events (not Parquet, missing or unknown columns) is
moved to ``lake_dir/rejected/`` with a ``.report.json`` saying why, and the night goes on.

A file of more than ``chunk_rows`` rows (a whole world's log) is landed ``chunk_rows`` rows at a
time (``ingest_file``), the next chunk read ahead on a thread and the one before written on another
(``features.ingest.land_chunks``): memory is three chunks (and the ids of the one being written),
not the file; time is linear in its rows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from features.ingest import IngestError, IngestReport, file_batch_id, ingest, land_chunks, load_report, write_report
from features.lake_index import EventIdIndex
from pathways.parallel import Prefetched

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
    chunk_rows: int = 2_000_000,
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
            report = ingest_file(path, titles, profiles, lake_dir, now or datetime.now(UTC), index, chunk_rows)
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


def ingest_file(path: Path, titles: pa.Table, profiles: pa.Table, lake_dir: Path, now: datetime,
                index: EventIdIndex, chunk_rows: int) -> IngestReport:
    """``ingest(path)``; a file of more than ``chunk_rows`` rows is landed chunk by chunk as batches
    ``<file batch id>-c<k>`` (each with its own report: a killed ingest resumes at the first chunk
    without one; a duplicate id in a later chunk counts as ``duplicate_in_lake``), then the file's
    report, the chunks' sums, is written under the file's batch id."""
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError):
        rows = 0  # ingest says why the file cannot be read
    if rows <= chunk_rows:
        return ingest(path, titles, profiles, lake_dir, now=now, index=index)
    batch_id = file_batch_id(path)
    manifest = lake_dir / "batches" / f"{batch_id}.json"
    if manifest.exists():
        return load_report(manifest)
    # The next chunk is read and decoded on a thread while this one is checked, and the one before
    # it written (land_chunks).
    batches = Prefetched(pq.ParquetFile(path).iter_batches(batch_size=chunk_rows), depth=1, name="ingest-read")

    def chunks() -> Iterator[tuple[str, pa.Table | None]]:
        for k, batch in enumerate(batches):
            chunk_id = f"{batch_id}-c{k:05d}"
            done = (lake_dir / "batches" / f"{chunk_id}.json").exists()
            yield chunk_id, None if done else pa.Table.from_batches([batch])

    try:
        parts = land_chunks(chunks(), titles, profiles, lake_dir, now, index, name=str(path))
    finally:
        batches.close()
    by_reason: dict[str, int] = {}
    for part in parts:
        for reason, n in part.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    report = IngestReport(rows_in=sum(p.rows_in for p in parts), accepted=sum(p.accepted for p in parts),
                          quarantined=sum(p.quarantined for p in parts), by_reason=by_reason,
                          paths=tuple(x for p in parts for x in p.paths), batch_id=batch_id)
    write_report(lake_dir, report)
    return report
