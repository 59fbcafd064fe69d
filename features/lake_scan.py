"""Bounded-memory reads of the event lake: projected, filtered scans and a split by profile range.

- ``read_lake(lake_dir, columns, event_types)``: the accepted events (in ``read_events``' order)
  with only ``columns`` and only rows of ``event_types``, read file by file and batch by batch, so
  the memory is what is kept, never the whole lake (``event_id`` alone is most of a lake's bytes).
- ``split_by_profile(lake_dir, cuts, out_dir, columns, event_types)``: one pass over the lake that
  writes each kept row into the Parquet shard of its profile range (shard ``k`` holds the profile
  ids in ``(cuts[k-1], cuts[k]]``); rows keep their lake order within a shard, so per-profile
  results computed shard by shard equal those computed on the whole lake. Memory: one batch plus
  the shards' write buffers (``flush_rows`` rows each at most).

Cost: time grows with the events scanned (linear), memory with the batch and the shard count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.lake_index import event_files
from features.schema import EVENT_SCHEMA

BATCH_ROWS = 1 << 20


def _schema(columns: Sequence[str] | None) -> pa.Schema:
    if columns is None:
        return EVENT_SCHEMA
    unknown = sorted(set(columns) - set(EVENT_SCHEMA.names))
    if unknown:
        raise ValueError(f"unknown event columns {unknown}")
    return pa.schema([EVENT_SCHEMA.field(c) for c in columns], metadata=EVENT_SCHEMA.metadata)


def iter_lake(lake_dir: Path | str, columns: Sequence[str] | None = None,
              event_types: Sequence[str] | None = None, batch_rows: int | None = None) -> Iterator[pa.Table]:
    """Tables of at most ``batch_rows`` accepted events (oldest part first), projected to ``columns``
    (None: all) and filtered to ``event_types`` (None: all)."""
    schema = _schema(columns)
    read = list(schema.names)
    if event_types is not None and "event_type" not in read:
        read.append("event_type")
    wanted = pa.array(list(event_types), pa.string()) if event_types is not None else None
    for path in event_files(Path(lake_dir)):
        source = pq.ParquetFile(path)
        present = [c for c in read if c in source.schema_arrow.names]
        for batch in source.iter_batches(batch_size=batch_rows or BATCH_ROWS, columns=present):
            table = pa.Table.from_batches([batch])
            for name in read:  # an older part without a column: nulls, as read_events reads it
                if name not in table.column_names:
                    table = table.append_column(name, pa.nulls(table.num_rows, EVENT_SCHEMA.field(name).type))
            if wanted is not None:
                table = table.filter(pc.is_in(table["event_type"], wanted))
            yield table.select(schema.names).cast(schema)


def read_lake(lake_dir: Path | str, columns: Sequence[str] | None = None,
              event_types: Sequence[str] | None = None) -> pa.Table:
    """The accepted events as one table, projected and filtered as ``iter_lake`` does."""
    parts = list(iter_lake(lake_dir, columns, event_types))
    return pa.concat_tables(parts) if parts else _schema(columns).empty_table()


def split_by_profile(lake_dir: Path | str, cuts: np.ndarray, out_dir: Path, columns: Sequence[str],
                     event_types: Sequence[str] | None = None, flush_rows: int = 1 << 17) -> list[Path]:
    """Shard the lake by profile range (see the module docstring); returns one path per shard (an
    empty shard has a file with no rows). Rows of profiles above ``cuts[-1]`` are dropped."""
    if "profile_id" not in columns:
        raise ValueError("split_by_profile needs the profile_id column")
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = _schema(columns)
    paths = [out_dir / f"shard-{k:05d}.parquet" for k in range(len(cuts))]
    writers = [pq.ParquetWriter(p, schema) for p in paths]
    buffers: list[list[pa.Table]] = [[] for _ in paths]
    sizes = [0] * len(paths)
    try:
        for table in iter_lake(lake_dir, columns, event_types):
            shard = np.searchsorted(cuts, table["profile_id"].to_numpy(zero_copy_only=False), side="left")
            order = np.argsort(shard, kind="stable")  # lake order within each shard
            bounds = np.searchsorted(shard[order], np.arange(len(paths) + 1), side="left")
            for k in map(int, np.flatnonzero(np.diff(bounds))):
                part = table.take(pa.array(order[bounds[k]:bounds[k + 1]]))
                buffers[k].append(part)
                sizes[k] += part.num_rows
                if sizes[k] >= flush_rows:
                    writers[k].write_table(pa.concat_tables(buffers[k]))
                    buffers[k], sizes[k] = [], 0
        for writer, buffer in zip(writers, buffers):
            if buffer:
                writer.write_table(pa.concat_tables(buffer))
    finally:
        for writer in writers:
            writer.close()
    return paths
