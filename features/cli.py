"""``pathways ingest`` and ``pathways features materialize``.

A world directory holds ``titles.parquet`` and ``profiles.parquet`` (TITLE_SCHEMA,
PROFILE_SCHEMA). Heavy imports (feast) happen inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

WORLD_FILES = ("titles.parquet", "profiles.parquet")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ingest`` and ``features`` (with ``materialize``) to the pathways command line."""
    ingest = subparsers.add_parser("ingest", help="validate an event file and add it to the lake")
    ingest.add_argument("--events", type=Path, required=True, help="a Parquet file of events")
    ingest.add_argument("--world", type=Path, required=True, help="folder with titles/profiles Parquet")
    ingest.add_argument("--lake", type=Path, required=True, help="the lake folder (created if needed)")
    ingest.set_defaults(handler=run_ingest)

    features = subparsers.add_parser("features", help="feature store commands")
    fsub = features.add_subparsers(dest="features_command", metavar="ACTION")
    fsub.required = True
    mat = fsub.add_parser("materialize", help="compute features from the lake, apply Feast, materialize")
    mat.add_argument("--data-dir", type=Path, required=True, help="data folder (lake/, feature_repo/ inside)")
    mat.add_argument("--world", type=Path, default=None, help="world folder (default: DATA_DIR/raw)")
    mat.add_argument("--config", type=Path, default=None, help="a Pathways TOML/JSON config file")
    mat.set_defaults(handler=run_materialize)


def read_world(world_dir: Path) -> tuple[pa.Table, pa.Table]:
    """(titles, profiles) tables from ``world_dir``; clear errors when something is missing."""
    import pyarrow.parquet as pq

    if not world_dir.is_dir():
        raise FileNotFoundError(f"world folder not found: {world_dir}")
    missing = [f for f in WORLD_FILES if not (world_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"world folder {world_dir} lacks {', '.join(missing)}")
    return pq.read_table(world_dir / "titles.parquet"), pq.read_table(world_dir / "profiles.parquet")


def run_ingest(args: argparse.Namespace) -> int:
    from features.ingest import ingest

    if not args.events.is_file():
        raise FileNotFoundError(f"event file not found: {args.events}")
    if args.lake.exists() and not args.lake.is_dir():
        raise ValueError(f"--lake {args.lake} exists and is not a folder")
    titles, profiles = read_world(args.world)
    print(ingest(args.events, titles, profiles, args.lake))
    return 0


def run_materialize(args: argparse.Namespace) -> int:
    from features.ingest import read_events
    from features.store import build_feature_store
    from pathways.config import load_config

    config = load_config(args.config, data_dir=str(args.data_dir))
    if not config.lake_dir.is_dir():
        raise FileNotFoundError(f"no lake at {config.lake_dir}: run `pathways ingest` first")
    events = read_events(config.lake_dir)
    if events.num_rows == 0:
        raise ValueError(f"the lake at {config.lake_dir} holds no accepted events")
    titles, profiles = read_world(args.world or config.raw_dir)
    manager, frames = build_feature_store(events, titles, profiles, config.features, config.feature_repo_dir)
    print(
        f"features: {len(frames.profiles)} profile, {len(frames.titles)} title and "
        f"{len(frames.title_regions)} title-region snapshot rows from {events.num_rows} events; "
        f"repo {manager.repo_dir} materialized to {frames.profiles['event_timestamp'].max()}"
    )
    return 0
