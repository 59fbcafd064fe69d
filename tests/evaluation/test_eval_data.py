"""Events -> Interactions: which events count, one row per pair at its first timestamp, id maps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.schema import EVENT_SCHEMA
from training.data import fingerprint, interactions_from_events, load_dataset

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def events(rows: list[tuple[str, int, int | None, int]]) -> pa.Table:
    """rows of (event_type, profile_id, title_id, seconds after T0)."""
    return pa.Table.from_pylist(
        [
            {"event_id": f"e{i}", "event_type": t, "ts": T0 + timedelta(seconds=s), "profile_id": p, "title_id": title}
            for i, (t, p, title, s) in enumerate(rows)
        ],
        schema=EVENT_SCHEMA,
    )


def test_one_positive_per_pair_at_its_first_timestamp():
    table = events(
        [
            ("play", 7, 300, 50),
            ("rating", 7, 300, 10),  # earlier: the pair's timestamp
            ("complete", 7, 300, 60),
            ("impression", 7, 400, 5),  # not a positive
            ("search", 7, None, 6),
            ("play", 3, 400, 20),
        ]
    )
    inter = interactions_from_events(table, item_ids=np.array([500, 300]))
    assert inter.user_ids.tolist() == [3, 7]
    assert inter.item_ids.tolist() == [300, 400, 500]  # the catalog plus titles seen in events
    got = sorted(zip(inter.user_ids[inter.users].tolist(), inter.item_ids[inter.items].tolist(), inter.timestamps.tolist()))
    t0 = int(T0.timestamp())
    assert got == [(3, 400, t0 + 20), (7, 300, t0 + 10)]
    weights = dict(zip(inter.item_ids[inter.items].tolist(), inter.weights.tolist()))
    assert weights == {300: 3.0, 400: 1.0}  # positive events per pair


def test_event_types_are_chosen_and_validated():
    table = events([("play", 1, 10, 0), ("rating", 2, 20, 0)])
    only_ratings = interactions_from_events(table, event_types=("rating",))
    assert only_ratings.user_ids.tolist() == [2] and len(only_ratings) == 1
    with pytest.raises(ValueError, match="unknown types"):
        interactions_from_events(table, event_types=("watch",))
    with pytest.raises(ValueError, match="lack the 'ts' column"):
        interactions_from_events(table.drop(["ts"]))


def test_load_dataset_reads_a_world_folder(tmp_path, titles):
    table = events([("play", 1, 100, 0), ("play", 2, 101, 5), ("rating", 2, 100, 9)])
    pq.write_table(table, tmp_path / "events.parquet")
    pq.write_table(titles, tmp_path / "titles.parquet")
    data = load_dataset(tmp_path)
    assert data.source == "world"
    assert data.interactions.n_items == titles.num_rows and len(data.interactions) == 3
    assert data.item_genres[0] == titles.column("genres")[0].as_py()


def test_fingerprint_depends_on_content_not_order():
    a = interactions_from_events(events([("play", 1, 10, 0), ("play", 2, 20, 5)]))
    b = interactions_from_events(events([("play", 2, 20, 5), ("play", 1, 10, 0)]))
    c = interactions_from_events(events([("play", 2, 20, 6), ("play", 1, 10, 0)]))
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="no MovieLens ratings file"):
        load_dataset(tmp_path)
