"""From events to ``Interactions``: the one place where "what counts as a positive" is decided.

Every event of the positive types (``play``, ``rating``, ``complete``; any rating value, any
fraction watched) makes its (profile, title) pair a positive. Each pair appears **once**, at the
timestamp of its *first* positive event (the moment the member first showed interest), so
protocols order interactions by (first timestamp, title id). ``weights`` count the pair's
positive events. Dense indices: users are the sorted profile ids with a positive, items the
sorted title ids of the catalog (every title of ``titles`` when given, so ranking covers the
whole catalog, plus any title seen in events).

``load_dataset(path)`` reads a world folder (``events.parquet`` + ``titles.parquet``, as written
by the synthetic world) or any MovieLens folder (``features.sources.movielens``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.schema import EventType
from training.recommender import Interactions

POSITIVE_TYPES: tuple[str, ...] = (EventType.PLAY.value, EventType.RATING.value, EventType.COMPLETE.value)
WORLD_FILES = ("events.parquet", "titles.parquet")


@dataclass(frozen=True)
class Dataset:
    """Interactions plus what evaluation needs about items, aligned with the dense item index."""

    interactions: Interactions
    item_genres: list[list[str]]  # dense item -> its genres
    source: str  # "world" or the MovieLens layout ("csv", "dat", "100k")
    path: str

    def fingerprint(self) -> str:
        return fingerprint(self.interactions)


def interactions_from_events(
    events: pa.Table,
    event_types: Sequence[str] = POSITIVE_TYPES,
    item_ids: np.ndarray | None = None,
) -> Interactions:
    """One positive per (profile, title) pair with its first timestamp (seconds since epoch).

    ``item_ids`` (sorted or not, int64) fixes the catalog; titles seen in events are added to it.
    """
    for column in ("event_type", "profile_id", "title_id", "ts"):
        if column not in events.column_names:
            raise ValueError(f"events lack the {column!r} column (expected EVENT_SCHEMA)")
    unknown = set(event_types) - set(EventType)
    if unknown:
        raise ValueError(f"event_types holds unknown types {sorted(unknown)}")
    mask = pc.and_(pc.is_in(events.column("event_type"), pa.array(list(event_types), pa.string())),
                   pc.is_valid(events.column("title_id")))
    chosen = events.filter(mask)
    profiles = chosen.column("profile_id").to_numpy().astype(np.int64)
    titles = chosen.column("title_id").to_numpy().astype(np.int64)
    seconds = chosen.column("ts").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy() // 1000
    user_ids, users = np.unique(profiles, return_inverse=True)
    catalog = np.unique(np.concatenate([np.asarray(item_ids if item_ids is not None else [], np.int64), titles]))
    items = np.searchsorted(catalog, titles)
    # Sort by (user, item, ts); the first row of each pair holds its earliest timestamp.
    order = np.lexsort((seconds, items, users))
    u, i, t = users[order], items[order], seconds[order]
    starts = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1])]) if len(u) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(u)]).astype(np.float32)
    return Interactions(
        users=u[starts].astype(np.int64),
        items=i[starts].astype(np.int64),
        timestamps=t[starts].astype(np.int64),
        n_users=len(user_ids),
        n_items=len(catalog),
        weights=counts,
        user_ids=user_ids.astype(np.int64),
        item_ids=catalog.astype(np.int64),
    )


def fold_in_blocks(tables: Iterable[pa.Table], item_ids: np.ndarray) -> Iterator[Interactions]:
    """``interactions_from_events`` of each table (a block of profiles, e.g. those a training sample left
    out) over exactly the catalog ``item_ids`` a model was fit on (sorted int64): events of titles
    outside it are dropped (the model has nothing for them). Empty blocks are skipped."""
    known = pa.array(np.asarray(item_ids, np.int64))
    for table in tables:
        table = table.filter(pc.is_in(table.column("title_id"), known))
        inter = interactions_from_events(table, item_ids=item_ids)
        if inter.n_users:
            yield inter


def item_genres_for(interactions: Interactions, titles: pa.Table) -> list[list[str]]:
    """Genres of each dense item (empty for titles missing from ``titles``)."""
    by_id = dict(zip(titles.column("title_id").to_pylist(), titles.column("genres").to_pylist()))
    return [list(by_id.get(int(t)) or []) for t in interactions.item_ids]


def load_dataset(path: Path | str, event_types: Sequence[str] = POSITIVE_TYPES) -> Dataset:
    """A world folder or a MovieLens folder (any layout) as a ``Dataset``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"data folder not found: {path}")
    if all((path / f).is_file() for f in WORLD_FILES):
        events, titles, source = pq.read_table(path / "events.parquet"), pq.read_table(path / "titles.parquet"), "world"
    else:
        from features.sources.movielens import load_movielens

        loaded = load_movielens(path)
        events, titles, source = loaded.events, loaded.titles, loaded.layout
    inter = interactions_from_events(events, event_types, item_ids=titles.column("title_id").to_numpy())
    if len(inter) == 0:
        raise ValueError(f"{path}: no positive events of types {list(event_types)}")
    return Dataset(inter, item_genres_for(inter, titles), source, str(path))


def fingerprint(inter: Interactions) -> str:
    """sha256 (first 16 hex) of the interactions in original ids: same data -> same fingerprint."""
    h = hashlib.sha256()
    uid = inter.user_ids[inter.users] if len(inter.user_ids) else inter.users
    iid = inter.item_ids[inter.items] if len(inter.item_ids) else inter.items
    order = np.lexsort((iid, uid))
    for arr in (uid[order], iid[order], inter.timestamps[order]):
        h.update(np.ascontiguousarray(arr, np.int64).tobytes())
    h.update(f"{inter.n_users}:{inter.n_items}".encode())
    return h.hexdigest()[:16]
