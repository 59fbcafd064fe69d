"""Chunked writes of the daily feature tables to the Parquet files Feast's FileSources read.

``FeatureTableWriter(data_dir, views)`` appends Arrow tables frame by frame (``append("profiles",
table)``: row groups added to a temporary file per view; a profiles table gains its packed online
vector, ``features/profile_vector.py``), so a table never has to be in memory
whole; ``commit(genres)`` closes the files and moves each onto its view's path (readers see the old
file or the new one, never a part) and writes ``genres.json``. Leaving a ``with`` block by an
exception (or ``abort``) deletes the temporary files and keeps the old ones. Timestamps are stored
in microseconds (DuckDB cannot cast TIMESTAMPTZ_NS in Feast's queries).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from features.profile_vector import with_vector

TIMESTAMP = pa.timestamp("us", tz="UTC")


class FeatureTableWriter:
    """Appends feature tables to ``data_dir/<view>.parquet``; ``views``: frame name -> view name."""

    def __init__(self, data_dir: Path, views: Mapping[str, str]) -> None:
        self.data_dir, self.views = data_dir, dict(views)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows = dict.fromkeys(self.views, 0)

    def _tmp(self, frame: str) -> Path:
        return self.data_dir / f"{self.views[frame]}.parquet.tmp"

    def append(self, frame: str, table: pa.Table) -> None:
        """Add ``table``'s rows to ``frame``'s file (the first table fixes the file's schema)."""
        if frame not in self.views:
            raise ValueError(f"unknown feature frame {frame!r}; expected one of {sorted(self.views)}")
        if frame == "profiles":  # what is read online, packed: one online row a profile
            table = with_vector(table)
        at = table.schema.get_field_index("event_timestamp")
        table = table.set_column(at, "event_timestamp", table["event_timestamp"].cast(TIMESTAMP, safe=False))
        if frame not in self._writers:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._writers[frame] = pq.ParquetWriter(self._tmp(frame), table.schema)
        self._writers[frame].write_table(table)
        self.rows[frame] += table.num_rows

    def commit(self, genres: tuple[str, ...]) -> dict[str, Path]:
        """Close the files, move them in place and write ``genres.json``; returns view -> path."""
        missing = sorted(set(self.views) - set(self._writers))
        if missing:
            self.abort()
            raise ValueError(f"no table was written for {missing}")
        paths = {}
        for frame, writer in self._writers.items():
            writer.close()
            path = self.data_dir / f"{self.views[frame]}.parquet"
            self._tmp(frame).replace(path)
            paths[self.views[frame]] = path
        self._writers.clear()
        (self.data_dir / "genres.json").write_text(json.dumps(list(genres)))
        return paths

    def abort(self) -> None:
        """Drop what was appended; the files already in place stay."""
        for frame, writer in self._writers.items():
            writer.close()
            self._tmp(frame).unlink(missing_ok=True)
        self._writers.clear()

    def __enter__(self) -> FeatureTableWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.abort()  # after commit there is nothing left to drop
