"""The Feast feature store of Pathways: repo layout, apply, materialize, offline and online reads.

``FeatureStoreManager(config, repo_dir)`` owns one feature repo folder::

    repo_dir/feature_store.yaml   project, registry, online store (SQLite or Redis), DuckDB offline
    repo_dir/definitions.py       copied from features/feature_repo/definitions.py
    repo_dir/settings.json        {"ttl_days": ...} read by the definitions
    repo_dir/data/*.parquet       the feature snapshots the FileSources point to
    repo_dir/data/genres.json     the order of ``genre_affinity``
    repo_dir/registry.db, online.db

It keeps one long-lived ``FeatureStore`` (importing feast costs seconds). ``historical`` uses
Feast's point-in-time join on the DuckDB offline store and returns one row per entity row, in the
entity frame's order (the file/dask offline store silently drops rows; see STACK.md); its feature
columns are named ``<view>__<feature>`` because ranker_v1 joins views with equal feature names.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import sys
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.compute import FeatureFrames, impression_training_frame
from features.offline_writer import FeatureTableWriter
from features.profile_vector import FIELDS, VECTOR, unpack_frame
from pathways.config import FeatureConfig

__all__ = ["FeatureStoreManager", "build_feature_store", "impression_training_frame", "BATCH_VIEWS", "ONLINE_VIEWS", "PLAYBACK_SCHEMA"]

TEMPLATE = Path(__file__).resolve().parent / "feature_repo" / "definitions.py"
REDIS_TIMEOUT_S = 0.5
BATCH_VIEWS = {"profiles": "profile_stats", "titles": "title_stats", "title_regions": "title_region_trending"}
# What materialize loads online: profile_stats travels packed as profile_online (features/profile_vector.py).
ONLINE_VIEWS = ("profile_online", "title_stats", "title_region_trending")
PLAYBACK_SCHEMA = pa.schema(
    [
        pa.field("profile_id", pa.int64()),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("in_progress_title_ids", pa.list_(pa.int64())),
        pa.field("in_progress_fractions", pa.list_(pa.float32())),
        pa.field("in_progress_updated", pa.list_(pa.int64())),
        pa.field("finished_title_ids", pa.list_(pa.int64())),
    ]
)


def feature_store_yaml(config: FeatureConfig, repo_dir: Path) -> str:
    """The ``feature_store.yaml`` text for ``config`` (absolute paths under ``repo_dir``)."""
    if config.online_store == "redis":
        conn = config.redis_connection
        if "socket_timeout" not in conn:  # without it a hung Redis blocks a request forever
            conn += f",socket_connect_timeout={REDIS_TIMEOUT_S},socket_timeout={REDIS_TIMEOUT_S}"
        online = f"  type: redis\n  connection_string: \"{conn}\"\n"
    else:
        online = f"  type: sqlite\n  path: {repo_dir / 'online.db'}\n"
    return (
        f"project: {config.project}\n"
        f"registry: {repo_dir / 'registry.db'}\n"
        "provider: local\n"
        f"online_store:\n{online}"
        f"offline_store:\n  type: {config.offline_store}\n"
        "entity_key_serialization_version: 3\n"
        f"materialization:\n  online_write_batch_size: {config.materialize_batch_rows}\n"
        "auth:\n  type: no_auth\n"
    )


class FeatureStoreManager:
    """Writes, registers and reads Pathways' Feast feature repo at ``repo_dir``."""

    def __init__(self, config: FeatureConfig, repo_dir: Path | str) -> None:
        self.config = config
        self.repo_dir = Path(repo_dir).resolve()
        self._store: Any = None
        self._feature_names: dict[str, list[str]] = {}  # view -> its features (registry reads are slow)

    @property
    def data_dir(self) -> Path:
        return self.repo_dir / "data"

    def write_repo(self) -> None:
        """Write feature_store.yaml, the definitions, settings and an empty playback source."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.repo_dir / "feature_store.yaml").write_text(feature_store_yaml(self.config, self.repo_dir))
        shutil.copyfile(TEMPLATE, self.repo_dir / "definitions.py")
        (self.repo_dir / "settings.json").write_text(json.dumps({"ttl_days": self.config.ttl_days}))
        playback = self.data_dir / "profile_playback.parquet"
        if not playback.exists():
            pq.write_table(PLAYBACK_SCHEMA.empty_table(), playback)

    @property
    def store(self) -> Any:
        """The long-lived ``feast.FeatureStore`` (created on first use)."""
        if self._store is None:
            from feast import FeatureStore

            if not (self.repo_dir / "feature_store.yaml").exists():
                raise FileNotFoundError(f"no feature repo at {self.repo_dir}: call apply() first")
            self._store = FeatureStore(repo_path=str(self.repo_dir))
        return self._store

    def definitions(self) -> list[Any]:
        """The Feast objects declared in the repo's definitions module."""
        from feast import Entity, FeatureService, FeatureView
        from feast.data_source import DataSource

        name = f"_pathways_feature_defs_{abs(hash(self.repo_dir))}"
        spec = importlib.util.spec_from_file_location(name, self.repo_dir / "definitions.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load feature definitions from {self.repo_dir / 'definitions.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        kinds = (Entity, DataSource, FeatureView, FeatureService)
        return [obj for obj in vars(module).values() if isinstance(obj, kinds)]

    def apply(self) -> list[str]:
        """Write the repo and register its definitions (idempotent). Returns the online views whose
        features changed since they were registered (names or types), or that a repo registered
        before did not have (nothing of theirs is online yet). A changed view's online tables are torn
        down and made anew (Feast's ``apply`` with ``objects_to_delete``), because Feast keeps the rows
        of a feature dropped from a view and SQLite's online read returns and parses every row of an
        entity, read or not; so is a view no longer online. The caller materializes in full again."""
        from feast import FeatureView

        self.write_repo()
        self._feature_names.clear()
        definitions = self.definitions()
        new = {d.name: d for d in definitions if isinstance(d, FeatureView) and d.online}
        old = self.store.list_feature_views()
        # online before and changed, or no longer online (its rows would stay in the store for nothing)
        changed = [view for view in old if view.online and (view.name not in new or _schema(view) != _schema(new[view.name]))]
        if changed:
            self.store.apply([], objects_to_delete=changed, partial=False)
            self._vacuum_online()
        self.store.apply(definitions)
        self.store.refresh_registry()
        added = set(new) - {view.name for view in old}  # new online views: nothing materialized yet
        return sorted({view.name for view in changed if view.name in new} | (added if old else set()))

    def _vacuum_online(self) -> None:
        """Give the pages of torn-down online tables back to the file system: SQLite drops a table's
        pages onto its free list and keeps the file's size (the upgraded 100k world's online.db:
        151 of its 215 MB free).
        Redis frees a key's memory when it is deleted; nothing to do there."""
        path = self.repo_dir / "online.db"
        if self.config.online_store == "redis" or not path.is_file():
            return
        with closing(sqlite3.connect(path, timeout=60)) as conn:
            conn.execute("VACUUM")

    def feature_writer(self) -> FeatureTableWriter:
        """A writer that appends feature tables block by block to the Parquet files the FileSources
        read (frames ``profiles``, ``titles``, ``title_regions``; see ``features/offline_writer.py``)."""
        return FeatureTableWriter(self.data_dir, BATCH_VIEWS)

    def write_features(self, frames: FeatureFrames) -> dict[str, Path]:
        """Write each frame to the Parquet file its FileSource reads; returns view -> path."""
        with self.feature_writer() as writer:
            for attr in BATCH_VIEWS:
                writer.append(attr, pa.Table.from_pandas(getattr(frames, attr), preserve_index=False))
            return writer.commit(frames.genres)

    def genres(self) -> tuple[str, ...]:
        """The order of ``genre_affinity``'s entries, as written by ``write_features``."""
        return tuple(json.loads((self.data_dir / "genres.json").read_text()))

    def materialize(self, end: datetime, start: datetime | None = None) -> None:
        """Load each entity's latest snapshot at or before ``end`` into the online store (the
        ``ONLINE_VIEWS``). Cost: one online row per entity and feature (a profile's features are one
        packed vector: one row a profile);
        memory: the pulled latest rows plus ``materialize_batch_rows`` rows converted at a time."""
        end = _utc(end)
        start = _utc(start) if start else end - timedelta(days=self.config.ttl_days)
        self.store.materialize(start_date=start, end_date=end, feature_views=list(ONLINE_VIEWS))

    def historical(self, entity_df: pd.DataFrame, service_or_features: str | Sequence[str]) -> pd.DataFrame:
        """Point-in-time join: ``entity_df`` (keys + ``event_timestamp``) with features.

        ``service_or_features``: a FeatureService name (``"ranker_v1"``) or ``["view:feature", ...]``.
        Returns ``entity_df``'s rows in its order (same length, same index) with feature columns
        ``<view>__<feature>`` appended; null where no snapshot lies within the TTL.
        """
        if "event_timestamp" not in entity_df.columns:
            raise ValueError("entity_df needs an event_timestamp column")
        features: Any = (
            self.store.get_feature_service(service_or_features)
            if isinstance(service_or_features, str)
            else list(service_or_features)
        )
        df = entity_df.reset_index(drop=True).copy()
        ts = pd.to_datetime(df["event_timestamp"])
        df["event_timestamp"] = ts.dt.tz_localize(UTC) if ts.dt.tz is None else ts.dt.tz_convert(UTC)
        df["_pathways_row"] = range(len(df))
        out = self.store.get_historical_features(entity_df=df, features=features, full_feature_names=True).to_df()
        if len(out) != len(df):
            raise RuntimeError(f"point-in-time join returned {len(out)} rows for {len(df)} entity rows")
        out = out.sort_values("_pathways_row").drop(columns="_pathways_row")
        out.index = entity_df.index
        out["event_timestamp"] = df["event_timestamp"].to_numpy()
        return out

    def _online(self, view: str, key: str, ids: Sequence[Any], names: Sequence[str] | None = None) -> pd.DataFrame:
        """One bulk read of ``names`` (default: every feature of ``view``) for the entities ``ids``,
        passed to Feast as one column (its feature names are looked up once per manager)."""
        if names is None:
            cached = self._feature_names.get(view)
            if cached is None:
                cached = self._feature_names[view] = [f.name for f in self.store.get_feature_view(view).features]
            names = cached
        got = self.store.get_online_features(features=[f"{view}:{n}" for n in names], entity_rows={key: list(ids)})
        return got.to_df()[[key, *names]]

    def online_profiles(self, ids: Sequence[int], names: Sequence[str] | None = None) -> pd.DataFrame:
        """The profile features read online (``names``, default all ``profile_vector.FIELDS``): one
        row per id, in order (null if unknown), unpacked from ``profile_online``'s one vector."""
        ids = [int(i) for i in ids]
        got = self.store.get_online_features(features=[f"profile_online:{VECTOR}"], entity_rows={"profile_id": ids})
        frame = unpack_frame(got.to_dict()[VECTOR], FIELDS if names is None else names)
        frame.insert(0, "profile_id", ids)
        return frame

    def online_titles(self, ids: Sequence[int]) -> pd.DataFrame:
        """title_stats from the online store: one row per id, in order (null if unknown)."""
        return self._online("title_stats", "title_id", [int(i) for i in ids])

    def online_trending(self, keys: Sequence[str]) -> pd.DataFrame:
        """title_region_trending for ``"<title_id>:<region>"`` keys, in order."""
        return self._online("title_region_trending", "title_region", list(keys))


def build_feature_store(
    events: pa.Table,
    titles: pa.Table,
    profiles: pa.Table,
    config: FeatureConfig,
    repo_dir: Path | str,
) -> tuple[FeatureStoreManager, FeatureFrames]:
    """Compute daily snapshots, write them, apply the repo and materialize up to the last day."""
    from features.compute import compute_features

    frames = compute_features(events, titles, profiles, config=config)
    manager = FeatureStoreManager(config, repo_dir)
    manager.write_features(frames)
    manager.apply()
    manager.materialize(frames.profiles["event_timestamp"].max().to_pydatetime())  # the last day's end
    return manager, frames


def _schema(view: Any) -> set[tuple[str, str]]:
    """A feature view's features as (name, type) pairs."""
    return {(f.name, str(f.dtype)) for f in view.features}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
