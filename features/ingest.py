"""Ingestion: validate an event batch against ``EVENT_SCHEMA`` and land it in the lake.

``ingest(source, titles, profiles, lake_dir)`` reads a batch (an Arrow table or a Parquet file),
coerces it to ``EVENT_SCHEMA``, checks every row against the rules below and writes

- accepted rows to ``lake_dir/events/date=<day>/part-<batch_id>.parquet`` (``EVENT_SCHEMA``, one
  file per day of ``ts``: ``features/lake_index.py``),
- rejected rows to ``lake_dir/quarantine/part-<batch_id>.parquet`` (the original columns as they
  arrived, plus ``reason``: the first rule the row failed),
- the report to ``lake_dir/batches/<batch_id>.json`` (written last: a batch is ingested once
  its report exists).

``batch_id`` is a hash of the batch's content, so ingesting the same file twice writes nothing
the second time and returns the first report with ``already_ingested=True``.

Rules, in the order they are checked (a row's ``reason`` is the first that fails):
``bad_type:<column>`` (the value cannot be read as the schema's type), ``missing:<column>``
(null in a required column), ``unknown_event_type``, ``unknown_profile_id``,
``missing_title_id`` (every type but search needs one), ``unknown_title_id``, ``ts_too_early``
(before 2000-01-01), ``ts_in_future`` (more than a day after ``now``), ``negative_row_index``,
``negative_position``, ``fraction_out_of_range`` (outside [0, 1]), ``negative_position_s``,
``missing_rating`` (a rating event without one), ``rating_out_of_range`` (outside [0.5, 5]),
``propensity_out_of_range`` (artwork impressions: null or outside (0, 1]),
``unknown_artwork_id`` (artwork events: not one of the title's variants),
``duplicate_in_lake`` (the event id is already in the lake, on the event's day or
``dedupe_days`` before: a bounded ``EventIdIndex``, not the whole lake) and
``duplicate_event_id`` (an earlier valid row of the batch has the same id; the first one is kept).

``land(raw, ...)`` is the same validation and landing for a table that is not a file (the stream
consumer's flushes, named by their stream positions); ``validate_events`` gives the per-row
reasons without writing (the API checks each posted event with it). ``ingest_new(files, ...)``
is the nightly's incremental ingest (``features/ingest_nightly.py``).

All checks are vectorized (pyarrow.compute / numpy / pandas): no Python loop over rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.lake_index import EventIdIndex, event_files, id_hashes, part_name, write_partitioned
from features.schema import EVENT_SCHEMA, EVENT_TYPES, EventType, empty_events

MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
REQUIRED = ("event_id", "event_type", "ts", "profile_id")


class IngestError(ValueError):
    """The whole batch cannot be read (missing or uncastable columns); names the file and column."""


@dataclass(frozen=True)
class IngestReport:
    """What one ``ingest`` call did. ``rows_in == accepted + quarantined`` always holds."""

    rows_in: int
    accepted: int
    quarantined: int
    by_reason: dict[str, int] = field(default_factory=dict)
    paths: tuple[str, ...] = ()
    batch_id: str = ""
    already_ingested: bool = False

    def __post_init__(self) -> None:
        if self.rows_in != self.accepted + self.quarantined:
            raise AssertionError(
                f"rows_in {self.rows_in} != accepted {self.accepted} + "
                f"quarantined {self.quarantined}"
            )
        if sum(self.by_reason.values()) != self.quarantined:
            raise AssertionError(f"by_reason {self.by_reason} does not sum to {self.quarantined}")

    def __str__(self) -> str:
        state = "already ingested" if self.already_ingested else "ingested"
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.by_reason.items())) or "none"
        return (
            f"batch {self.batch_id} {state}: {self.rows_in} rows in, {self.accepted} accepted, "
            f"{self.quarantined} quarantined ({reasons})"
        )


def ingest(
    source: pa.Table | Path | str,
    titles: pa.Table,
    profiles: pa.Table,
    lake_dir: Path | str,
    now: datetime | None = None,
    index: EventIdIndex | None = None,
) -> IngestReport:
    """Validate ``source`` and write accepted and quarantined rows under ``lake_dir``."""
    lake_dir = Path(lake_dir)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    raw, name, batch_id = _read_source(source)
    manifest = lake_dir / "batches" / f"{batch_id}.json"
    if manifest.exists():
        return load_report(manifest)
    return land(raw, titles, profiles, lake_dir, batch_id, now, name=name, index=index)


def validate_events(
    raw: pa.Table,
    titles: pa.Table,
    profiles: pa.Table,
    now: datetime,
    known_ids: pa.Array | None = None,
    name: str = "<table>",
) -> tuple[pa.Table, np.ndarray]:
    """``raw`` cast to ``EVENT_SCHEMA`` and the first failing rule per row ('' if valid, shape (n,)).
    ``known_ids``: ids already in the lake (None: not checked). Raises ``IngestError`` as ``ingest``."""
    events, bad_type = coerce_table(raw, EVENT_SCHEMA, name, required=REQUIRED)
    in_lake = (_mask(pc.is_in(events["event_id"], value_set=known_ids)) if known_ids is not None
               else np.zeros(events.num_rows, bool))
    return events, _reasons(events, bad_type, titles, profiles, now, in_lake)


@dataclass(frozen=True)
class _Checked:
    """One batch validated, not yet written: its accepted rows (with their id hashes) and its
    rejected rows (the raw row and its reason)."""

    batch_id: str
    rows_in: int
    accepted: pa.Table
    accepted_hashes: np.ndarray
    rejected: pa.Table | None
    by_reason: dict[str, int]

    @property
    def part_name(self) -> str:
        return part_name(self.batch_id)


def _check(raw: pa.Table, titles: pa.Table, profiles: pa.Table, batch_id: str, now: datetime, name: str,
           index: EventIdIndex) -> _Checked:
    """``raw`` validated against the lake as ``index`` knows it (nothing written)."""
    events, bad_type = coerce_table(raw, EVENT_SCHEMA, name, required=REQUIRED)
    hashes = id_hashes(events["event_id"])  # once: the lake check, the batch's own duplicates, the index
    in_lake = index.duplicates(events["event_id"], events["ts"], exclude=part_name(batch_id), hashes=hashes)
    reasons = _reasons(events, bad_type, titles, profiles, now, in_lake, hashes)
    bad = reasons != ""
    rejected = raw.filter(pa.array(bad)).append_column("reason", pa.array(reasons[bad])) if bad.any() else None
    kinds, counts = np.unique(reasons[bad], return_counts=True)
    return _Checked(batch_id, raw.num_rows, events.filter(pa.array(~bad)), hashes[~bad], rejected,
                    {str(k): int(c) for k, c in zip(kinds, counts)})


def _write(checked: _Checked, lake_dir: Path) -> IngestReport:
    """The accepted rows into the lake's day partitions, the rejected into the quarantine, then the
    batch's report (written last: a batch is done once its report exists)."""
    paths: list[str] = []
    if checked.accepted.num_rows:
        paths += write_partitioned(checked.accepted, lake_dir, checked.batch_id)
    if checked.rejected is not None:
        paths.append(_write_atomic(checked.rejected, lake_dir / "quarantine" / checked.part_name))
    report = IngestReport(
        rows_in=checked.rows_in,
        accepted=checked.accepted.num_rows,
        quarantined=checked.rows_in - checked.accepted.num_rows,
        by_reason=checked.by_reason,
        paths=tuple(paths),
        batch_id=checked.batch_id,
    )
    write_report(lake_dir, report)
    return report


def land(
    raw: pa.Table,
    titles: pa.Table,
    profiles: pa.Table,
    lake_dir: Path | str,
    batch_id: str,
    now: datetime,
    *,
    name: str = "<table>",
    index: EventIdIndex | None = None,
) -> IngestReport:
    """Validate ``raw`` and write it as batch ``batch_id`` (idempotent: the same batch rewrites the
    same files). ``index`` checks ids against the lake (a fresh one per call if None)."""
    lake_dir = Path(lake_dir)
    index = index or EventIdIndex(lake_dir)
    checked = _check(raw, titles, profiles, batch_id, now, name, index)
    report = _write(checked, lake_dir)
    if checked.accepted.num_rows:
        index.add(checked.accepted, checked.part_name, checked.accepted_hashes)
    return report


def land_chunks(
    chunks: Iterable[tuple[str, pa.Table | None]],
    titles: pa.Table,
    profiles: pa.Table,
    lake_dir: Path,
    now: datetime,
    index: EventIdIndex,
    *,
    name: str = "<table>",
) -> list[IngestReport]:
    """``land`` each (batch id, rows) in order (rows None: the batch is done, its report is read),
    each batch written on a thread while the next is validated: the ids of the batch being written
    are known to ``index`` from memory until its files exist, so the next batch's duplicates are
    found as by ``land`` one after the other. A batch's report is written after its files, and
    batches are written in order, so a kill leaves done exactly the batches with a report."""
    reports: list[IngestReport] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write") as writer:
        pending: tuple[Future[IngestReport], _Checked] | None = None

        def settle() -> None:
            nonlocal pending
            if pending is not None:
                future, checked = pending
                pending = None
                reports.append(future.result())
                index.written(checked.part_name)

        for batch_id, raw in chunks:
            if raw is None:
                settle()
                reports.append(load_report(lake_dir / "batches" / f"{batch_id}.json"))
                continue
            checked = _check(raw, titles, profiles, batch_id, now, name, index)
            settle()  # one batch in flight: its ids leave memory once its files are written
            if checked.accepted.num_rows:
                index.add(checked.accepted, checked.part_name, checked.accepted_hashes, in_memory=True)
            pending = (writer.submit(_write, checked, lake_dir), checked)
        settle()
    return reports


def write_report(lake_dir: Path, report: IngestReport) -> None:
    """``report`` as ``lake_dir/batches/<batch_id>.json``, atomically (a batch is done once it exists)."""
    manifest = lake_dir / "batches" / f"{report.batch_id}.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(report), indent=1))
    os.replace(tmp, manifest)


def read_events(lake_dir: Path | str) -> pa.Table:
    """Every accepted event in the lake, as one table with ``EVENT_SCHEMA`` (oldest part first)."""
    parts = event_files(Path(lake_dir))
    if not parts:
        return empty_events()
    return pa.concat_tables(pq.read_table(p, schema=EVENT_SCHEMA) for p in parts)


def read_quarantine(lake_dir: Path | str) -> list[pa.Table]:
    """Quarantined rows, one table per batch (their columns are as each batch arrived)."""
    return [pq.read_table(p) for p in sorted((Path(lake_dir) / "quarantine").glob("part-*.parquet"))]


def _read_source(source: pa.Table | Path | str) -> tuple[pa.Table, str, str]:
    """(raw table, a name for messages, content hash)."""
    if isinstance(source, pa.Table):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, source.schema) as writer:
            writer.write_table(source)
        return source, "<table>", hashlib.sha256(sink.getvalue()).hexdigest()[:16]
    path = Path(source)
    batch_id = file_batch_id(path)
    try:
        raw = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    return raw, str(path), batch_id


def file_batch_id(path: Path) -> str:
    """The batch id of an event file: a hash of its bytes (read in 4 MiB pieces)."""
    if not path.is_file():
        raise FileNotFoundError(f"event file not found: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def load_report(manifest: Path) -> IngestReport:
    data = json.loads(manifest.read_text())
    data["paths"] = tuple(data["paths"])
    data["already_ingested"] = True
    return IngestReport(**data)


def _mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow result as a numpy bool array, nulls read as False."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _reasons(
    ev: pa.Table,
    bad_type: dict[str, np.ndarray],
    titles: pa.Table,
    profiles: pa.Table,
    now: datetime,
    in_lake: np.ndarray,
    hashes: np.ndarray | None = None,
) -> np.ndarray:
    """The first failing rule per row ('' for valid rows), shape (n,), dtype object; ``in_lake``
    (shape (n,) bool) marks the ids already in the lake; ``hashes``: the ids' ``id_hashes``
    (computed here when not given)."""
    etype = ev["event_type"]
    tid = ev["title_id"]

    def is_type(*types: EventType) -> np.ndarray:
        return _mask(pc.is_in(etype, value_set=pa.array([t.value for t in types])))

    def outside(col: str, lo: float, hi: float, lo_open: bool = False) -> np.ndarray:
        below = pc.less_equal(ev[col], lo) if lo_open else pc.less(ev[col], lo)
        return _mask(pc.or_(below, pc.greater(ev[col], hi)))

    def null(col: str) -> np.ndarray:
        return _mask(pc.is_null(ev[col]))

    artwork_types = is_type(EventType.ARTWORK_IMPRESSION, EventType.ARTWORK_CLICK)
    rules: list[tuple[str, np.ndarray]] = [(f"bad_type:{c}", m) for c, m in bad_type.items()]
    rules += [(f"missing:{c}", null(c)) for c in REQUIRED]
    rules += [
        ("unknown_event_type", ~_mask(pc.is_in(etype, value_set=pa.array(EVENT_TYPES)))),
        ("unknown_profile_id", ~_mask(pc.is_in(ev["profile_id"], value_set=profiles["profile_id"]))),
        ("missing_title_id", null("title_id") & ~is_type(EventType.SEARCH)),
        ("unknown_title_id", ~null("title_id") & ~_mask(pc.is_in(tid, value_set=titles["title_id"]))),
        ("ts_too_early", _mask(pc.less(ev["ts"], pa.scalar(MIN_TS, ev.schema.field("ts").type)))),
        ("ts_in_future", _mask(pc.greater(ev["ts"], pa.scalar(now + MAX_FUTURE, ev.schema.field("ts").type)))),
        ("negative_row_index", _mask(pc.less(ev["row_index"], 0))),
        ("negative_position", _mask(pc.less(ev["position"], 0))),
        ("fraction_out_of_range", outside("fraction_watched", 0.0, 1.0)),
        ("negative_position_s", _mask(pc.less(ev["position_s"], 0.0))),
        ("missing_rating", null("rating") & is_type(EventType.RATING)),
        ("rating_out_of_range", outside("rating", 0.5, 5.0)),
        (
            "propensity_out_of_range",
            is_type(EventType.ARTWORK_IMPRESSION)
            & (null("propensity") | outside("propensity", 0.0, 1.0, lo_open=True)),
        ),
        ("unknown_artwork_id", _unknown_artwork(ev, titles, artwork_types)),
        ("duplicate_in_lake", in_lake),
    ]
    masks = [m for _, m in rules]
    names = [r for r, _ in rules]
    reasons = np.select(masks, names, default="").astype(object)
    # Duplicates within the batch: among rows valid so far, keep the first occurrence of an id.
    # Only rows whose 64-bit hash repeats can repeat an id: their strings are compared (exact).
    valid = np.flatnonzero(reasons == "")
    hashes = id_hashes(ev["event_id"]) if hashes is None else hashes
    maybe = valid[_repeated(hashes[valid])]
    if len(maybe):
        ids = ev["event_id"].take(pa.array(maybe)).to_pandas()
        reasons[maybe[ids.duplicated(keep="first").to_numpy()]] = "duplicate_event_id"
    return reasons


def _repeated(values: np.ndarray) -> np.ndarray:
    """Whether each value occurs more than once in ``values``, shape (n,) bool (one sort; the
    repeated values, rare, looked up)."""
    ordered = np.sort(values)
    repeats = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeats):
        return np.zeros(len(values), bool)
    return np.isin(values, repeats)


def _unknown_artwork(ev: pa.Table, titles: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Whether each of ``rows`` (shape (n,) bool: the artwork events) names an artwork that is not
    one of its title's variants (or none); False elsewhere. Shape (n,)."""
    variants = pc.list_flatten(titles["artwork_ids"]).to_numpy().astype(np.int64)
    owners = pc.list_parent_indices(titles["artwork_ids"]).to_numpy()
    known = np.sort(titles["title_id"].to_numpy()[owners].astype(np.int64) * (1 << 32) + variants)
    at_rows = pa.array(np.flatnonzero(rows))
    tid = pc.fill_null(ev["title_id"].take(at_rows), -1).to_numpy().astype(np.int64)
    art = ev["artwork_id"].take(at_rows)
    keys = tid * (1 << 32) + pc.fill_null(art, -1).to_numpy().astype(np.int64)
    at = np.minimum(np.searchsorted(known, keys), max(len(known) - 1, 0))  # membership by binary search
    ok = (known[at] == keys if len(known) else np.zeros(len(keys), bool)) & ~_mask(pc.is_null(art))
    unknown = np.zeros(len(rows), bool)
    unknown[rows] = ~ok
    return unknown


def _write_atomic(table: pa.Table, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return str(path)


def coerce_table(
    raw: pa.Table, schema: pa.Schema, name: str, required: tuple[str, ...] = ()
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """Cast ``raw`` to ``schema`` (all fields nullable); values that cannot be cast become null.

    Returns the cast table and, per column with bad values, a bool mask of shape (n,) marking
    them. Raises ``IngestError`` when a column is missing (required ones), unknown, or cannot be
    read at all (a nested type, or not one non-null value castable): the file is at fault.
    """
    pandas_index = [c for c in raw.column_names if c.startswith("__index_level_")]
    raw = raw.drop_columns(pandas_index)  # written by pandas with a non-default index
    unknown = sorted(set(raw.column_names) - set(schema.names))
    if unknown:
        raise IngestError(f"{name}: unknown columns {unknown} (schema has {schema.names})")
    missing = [c for c in required if c not in raw.column_names]
    if missing:
        raise IngestError(f"{name}: missing required columns {missing}")
    columns: list[pa.ChunkedArray | pa.Array] = []
    bad: dict[str, np.ndarray] = {}
    for fld in schema:
        if fld.name not in raw.column_names:
            columns.append(pa.nulls(raw.num_rows, fld.type))
            continue
        col, col_bad = _coerce_column(raw[fld.name], fld.type, f"{name}: column {fld.name!r}")
        columns.append(col)
        if col_bad is not None and col_bad.any():
            bad[fld.name] = col_bad
    nullable = pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)
    return pa.Table.from_arrays(columns, schema=nullable), bad


def _coerce_column(
    col: pa.ChunkedArray, target: pa.DataType, where: str
) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray | None]:
    if col.type == target:
        return col, None
    if pa.types.is_nested(col.type) or pa.types.is_binary(col.type):
        raise IngestError(f"{where} has type {col.type}, which cannot be read as {target}")
    try:  # timestamps may lose sub-millisecond precision, which is fine
        return pc.cast(col, target, safe=not pa.types.is_timestamp(col.type)), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = col.to_pandas()
    if pa.types.is_timestamp(target):
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
        out = pa.array(parsed, type=target, from_pandas=True)
    elif pa.types.is_integer(target) or pa.types.is_floating(target):
        parsed = pd.to_numeric(values, errors="coerce").astype("float64")
        if pa.types.is_integer(target):
            info = np.iinfo(target.to_pandas_dtype())
            fits = (parsed == np.round(parsed)) & (parsed >= info.min) & (parsed <= info.max)
            parsed = parsed.where(fits)
        out = pa.array(parsed, from_pandas=True).cast(target, safe=False)
    else:
        raise IngestError(f"{where} has type {col.type}, which cannot be read as {target}")
    col_bad = (values.notna() & parsed.isna()).to_numpy()
    if col_bad.any() and col_bad.sum() == values.notna().sum():
        raise IngestError(f"{where} has type {col.type}; none of its values read as {target}")
    return out, col_bad
