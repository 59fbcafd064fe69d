"""The lake consumer group: the stream compacted into time-partitioned Parquet, exactly once by id.

``LakeConsumer.poll()`` reads entries into a buffer and flushes it when it holds
``flush_events`` or its oldest entry waited ``flush_interval_s``. A flush is

1. an intent, written atomically (fsynced, renamed): the batch's name, its stream positions and
   the ``now`` used;
2. ``features.ingest.land``: the same validation as file ingest (events in = landed +
   quarantined, with reasons), one file per day partition and flush, named by the batch;
3. the intent again, marked ``landed``;
4. the group's commit in the stream; then the intent is removed.

A consumer killed anywhere in between finds the intent on restart (``recover``):

- not ``landed`` (killed before or during 2): it redoes that batch from the stream (``replay``)
  with the same name and ``now``: the same files are rewritten, never a second copy, and the
  batch's own files are left out of the duplicate check;
- ``landed`` (killed after 3, before or after the commit) and its batch report is there: the lake
  already holds the batch, so nothing is replayed or rewritten (an ``already_ingested`` report);
  the commit is made again (committing committed positions changes nothing) and the intent is
  removed. This path needs no stream entries, so it works even when the stream has since
  dropped them (retention).

So every accepted event is landed or quarantined once, counted by id, and no batch is landed
twice. One consumer per group at a time.

Each stream has its own consumer (``stream_name``): ``events`` lands one row per entry
(``entries_table``), ``impressions`` one ``artwork_impression`` row per title of each page entry
(``features.stream.impressions``); ``flush_events`` counts rows either way. The impressions
consumer's state and batches are named ``impressions-<group>`` so they never collide with the
events consumer's (``<group>``). ``run_consumers`` runs several in one process, in turn (pass
them one ``EventIdIndex``: each then sees the ids the other landed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from features.ingest import IngestReport, land
from features.lake_index import EventIdIndex
from features.stream.base import EventStream, StreamEntry, entries_table
from features.stream.impressions import impression_entries_table, page_rows

log = logging.getLogger(__name__)

# Per stream name: its entries as EVENT_SCHEMA rows, how many rows one entry holds, and how many
# to expect per entry before any was read (a page logs ~120 impressions).
LANDINGS: dict[str, tuple[Callable[[Sequence[StreamEntry]], pa.Table], Callable[[StreamEntry], int], float]] = {
    "events": (entries_table, lambda entry: 1, 1.0),
    "impressions": (impression_entries_table, page_rows, 100.0),
}


class LakeConsumer:
    """Flushes the stream's events for ``group`` into ``lake_dir`` (see the module docstring)."""

    def __init__(
        self,
        stream: EventStream,
        lake_dir: Path | str,
        titles: pa.Table,
        profiles: pa.Table,
        *,
        group: str = "lake",
        consumer: str = "lake-1",
        flush_events: int = 20_000,
        flush_interval_s: float = 5.0,
        dedupe_days: int = 1,
        stream_name: str = "events",
        index: EventIdIndex | None = None,
    ) -> None:
        self.stream = stream
        self.to_table, self.rows_of, self._per_entry = LANDINGS[stream_name]
        self.label = group if stream_name == "events" else f"{stream_name}-{group}"
        self.lake_dir = Path(lake_dir)
        self.titles = titles
        self.profiles = profiles
        self.group = group
        self.consumer = consumer
        self.flush_events = flush_events
        self.flush_interval_s = flush_interval_s
        self.index = index if index is not None else EventIdIndex(self.lake_dir, dedupe_days=dedupe_days)
        self.state_dir = self.lake_dir / "stream" / self.label
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.buffer: list[StreamEntry] = []
        self.buffered_rows = 0
        self._oldest_at = 0.0

    @property
    def intent_path(self) -> Path:
        return self.state_dir / "intent.json"

    def recover(self) -> IngestReport | None:
        """Finish the batch a crashed consumer left half-done, if any."""
        if not self.intent_path.exists():
            return None
        intent = json.loads(self.intent_path.read_text())
        manifest = self.lake_dir / "batches" / f"{intent['batch_id']}.json"
        if intent.get("landed") and manifest.exists():
            log.warning("batch %s was landed before a crash; committing it again", intent["batch_id"])
            self._commit(intent["positions"])
            data = json.loads(manifest.read_text())
            return IngestReport(**{**data, "paths": tuple(data["paths"]), "already_ingested": True})
        entries = self.stream.replay(intent["positions"])
        if len(entries) != len(intent["positions"]):
            raise RuntimeError(f"stream lost entries of unfinished batch {intent['batch_id']} (retention too short?)")
        log.warning("redoing batch %s (%d events) left by a crashed consumer", intent["batch_id"], len(entries))
        return self._land(entries, intent["batch_id"], datetime.fromisoformat(intent["now"]))

    def poll(self, block_s: float = 0.5) -> IngestReport | None:
        """Read what is there (waiting up to ``block_s``); flush if the buffer is full or old enough."""
        room = self.flush_events - self.buffered_rows
        count = max(1, int(room / max(self._per_entry, 1.0)))  # entries that fill the room in rows, about
        entries = self.stream.read(self.group, self.consumer, count, block_s=block_s) if room > 0 else []
        if entries and not self.buffer:
            self._oldest_at = time.monotonic()
        self.buffer.extend(entries)
        rows = sum(self.rows_of(e) for e in entries)
        self.buffered_rows += rows
        if entries:
            self._per_entry = rows / len(entries)
        due = self.buffer and time.monotonic() - self._oldest_at >= self.flush_interval_s
        if self.buffered_rows >= self.flush_events or due:
            return self.flush()
        return None

    def flush(self) -> IngestReport | None:
        """Land the buffer now (intent, land, commit)."""
        if not self.buffer:
            return None
        entries, self.buffer, self.buffered_rows = self.buffer, [], 0
        batch_id = f"stream-{self.label}-{re.sub(r'[^0-9A-Za-z_-]', '_', entries[0].position)}"
        return self._land(entries, batch_id, datetime.now(UTC))

    def _land(self, entries: Sequence[StreamEntry], batch_id: str, now: datetime) -> IngestReport:
        positions = [e.position for e in entries]
        intent = {"batch_id": batch_id, "positions": positions, "now": now.isoformat(), "landed": False}
        self._write_intent(intent)
        report = land(self.to_table(entries), self.titles, self.profiles, self.lake_dir, batch_id, now, index=self.index)
        self._write_intent({**intent, "landed": True})
        self._commit(positions)
        return report

    def _write_intent(self, intent: dict[str, object]) -> None:
        """Replace the intent file atomically and durably (fsynced, renamed)."""
        tmp = self.intent_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(intent, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.intent_path)

    def _commit(self, positions: Sequence[str]) -> None:
        """Commit ``positions`` in the stream, then drop the intent (the batch is done)."""
        self.stream.commit(self.group, positions)
        self.intent_path.unlink()

    def run(self, stop: threading.Event, block_s: float = 0.5) -> None:
        """Recover, then poll until ``stop`` is set; flush what is buffered before returning."""
        run_consumers([self], stop, block_s)


def run_consumers(consumers: Sequence[LakeConsumer], stop: threading.Event, block_s: float = 0.5) -> None:
    """Recover each consumer, then poll them in turn (waiting up to ``block_s`` in all per round)
    until ``stop`` is set; flush what each has buffered before returning."""
    for consumer in consumers:
        consumer.recover()
    while not stop.is_set():
        for consumer in consumers:
            report = consumer.poll(block_s / len(consumers))
            if report is not None:
                log.info("%s: %s; lag %d", consumer.label, report, consumer.stream.lag(consumer.group))
    for consumer in consumers:
        consumer.flush()


def landed_totals(lake_dir: Path | str) -> dict[str, int]:
    """Sums over the stream's batch reports in ``lake_dir``: rows_in, accepted, quarantined."""
    totals = {"rows_in": 0, "accepted": 0, "quarantined": 0, "batches": 0}
    for path in sorted((Path(lake_dir) / "batches").glob("stream-*.json")):
        report = json.loads(path.read_text())
        for key in ("rows_in", "accepted", "quarantined"):
            totals[key] += int(report[key])
        totals["batches"] += 1
    return totals
