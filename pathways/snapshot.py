"""Published snapshots: what one nightly run serves, written beside the old one, switched atomically.

Layout under ``snapshots_dir``::

    CURRENT                  one line: the live version (switched last, with os.replace)
    <version>/manifest.json  version, created_at, counts, model URIs, config
    <version>/pages.parquet      profile_id:int64, cell:string, page_json:string
    <version>/fallback.parquet   region:string, max_maturity_level:int8, page_json:string
    <version>/titles.parquet     the catalog as served (TITLE_SCHEMA)
    <version>/profiles.parquet   the profiles known at build time (PROFILE_SCHEMA)
    .staging-<version>/      a snapshot being written; never read, removed on the next publish

A failed or interrupted run never touches ``CURRENT``, so the previous version stays live.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pathways.types import Page

CURRENT = "CURRENT"
STAGING_PREFIX = ".staging-"
PAGES = "pages.parquet"
FALLBACK = "fallback.parquet"
TITLES = "titles.parquet"
PROFILES = "profiles.parquet"
MANIFEST = "manifest.json"

PAGES_SCHEMA = pa.schema(
    [("profile_id", pa.int64()), ("cell", pa.string()), ("page_json", pa.string())]
)
FALLBACK_SCHEMA = pa.schema(
    [("region", pa.string()), ("max_maturity_level", pa.int8()), ("page_json", pa.string())]
)


class SnapshotError(RuntimeError):
    """No usable snapshot (missing pointer, missing files, unreadable manifest)."""


def new_version(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("v%Y%m%dT%H%M%S%fZ")


@dataclass
class SnapshotWriter:
    """Stage a snapshot's files, then ``publish()`` it. Nothing is visible until publish."""

    root: Path
    version: str

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.staging = self.root / f"{STAGING_PREFIX}{self.version}"
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)

    def write_table(self, name: str, table: pa.Table) -> Path:
        path = self.staging / name
        pq.write_table(table, path)
        return path

    def write_pages(self, pages: list[tuple[int, str, Page]]) -> None:
        """``pages``: (profile_id, cell, page) triples."""
        table = pa.table(
            {
                "profile_id": pa.array([p for p, _, _ in pages], pa.int64()),
                "cell": pa.array([c for _, c, _ in pages], pa.string()),
                "page_json": pa.array([json.dumps(pg.to_dict()) for _, _, pg in pages]),
            },
            schema=PAGES_SCHEMA,
        )
        self.write_table(PAGES, table)

    def write_page_json(self, records: list[tuple[int, str, str]]) -> None:
        """``records``: (profile_id, cell, page JSON) triples, already serialized."""
        table = pa.table(
            {
                "profile_id": pa.array([r[0] for r in records], pa.int64()),
                "cell": pa.array([r[1] for r in records], pa.string()),
                "page_json": pa.array([r[2] for r in records], pa.string()),
            },
            schema=PAGES_SCHEMA,
        )
        self.write_table(PAGES, table)

    def write_fallbacks(self, pages: dict[tuple[str, int], Page]) -> None:
        keys = sorted(pages)
        table = pa.table(
            {
                "region": pa.array([r for r, _ in keys], pa.string()),
                "max_maturity_level": pa.array([m for _, m in keys], pa.int8()),
                "page_json": pa.array([json.dumps(pages[k].to_dict()) for k in keys]),
            },
            schema=FALLBACK_SCHEMA,
        )
        self.write_table(FALLBACK, table)

    def publish(self, manifest: dict[str, Any]) -> Path:
        """Move the staged files into place and switch ``CURRENT`` last. Returns the live dir."""
        for required in (PAGES, FALLBACK, TITLES, PROFILES):
            if not (self.staging / required).is_file():
                raise SnapshotError(f"cannot publish {self.version}: {required} was not written")
        manifest = {"version": self.version, "published_at": datetime.now(UTC).isoformat(), **manifest}
        (self.staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        final = self.root / self.version
        if final.exists():
            raise SnapshotError(f"snapshot {self.version} already exists")
        os.replace(self.staging, final)
        _fsync_dir(self.root)
        pointer_tmp = self.root / f".{CURRENT}.tmp"
        with open(pointer_tmp, "w") as fh:
            fh.write(self.version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer_tmp, self.root / CURRENT)
        _fsync_dir(self.root)
        return final

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_version(root: Path) -> str | None:
    """The live version, or None when nothing was ever published (or the pointer is gone)."""
    pointer = Path(root) / CURRENT
    try:
        version = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    return version or None


def current_dir(root: Path) -> Path:
    version = current_version(root)
    if version is None:
        raise SnapshotError(f"no published snapshot under {root}")
    path = Path(root) / version
    if not (path / MANIFEST).is_file():
        raise SnapshotError(f"snapshot {version} is missing under {root}")
    return path


def read_manifest(snapshot_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(snapshot_dir) / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"cannot read manifest of {snapshot_dir}: {exc}") from None


def list_versions(root: Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v"))


def prune(root: Path, keep: int = 3) -> list[str]:
    """Remove stale staging dirs and all but the newest ``keep`` versions (never the live one)."""
    root = Path(root)
    removed: list[str] = []
    live = current_version(root)
    for p in root.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    versions = list_versions(root)
    for v in versions[: max(0, len(versions) - keep)]:
        if v != live:
            shutil.rmtree(root / v, ignore_errors=True)
            removed.append(v)
    return removed
