"""Served artwork as ``artwork_impression`` events (``features.schema.EVENT_SCHEMA``), the rows that
``BanditLog.from_events`` turns back into bandit rounds once clicks and plays join them."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from features.schema import EVENT_SCHEMA, EventType
from pathways.types import ArtworkChoice


def artwork_impression_events(
    choice: ArtworkChoice,
    profile_id: int,
    title_ids: np.ndarray,
    row_index: np.ndarray,
    positions: np.ndarray,
    session_id: str,
    ts: datetime,
    request_id: str,
    device: str | None = None,
) -> pa.Table:
    """One event per title on the page (n,), carrying the arm, its propensity and the policy version.

    Event ids are ``"{request_id}:art:{i}"``, so logging the same page twice is idempotent.
    """
    titles = np.asarray(title_ids, dtype=np.int64)
    n = len(titles)
    for name, arr in (("row_index", row_index), ("positions", positions), ("choice.arms", choice.arms)):
        if np.asarray(arr).shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},), got {np.asarray(arr).shape}")
    columns = {
        "event_id": [f"{request_id}:art:{i}" for i in range(n)],
        "event_type": [EventType.ARTWORK_IMPRESSION.value] * n,
        "ts": pa.array([ts] * n, EVENT_SCHEMA.field("ts").type),
        "profile_id": np.full(n, profile_id, dtype=np.int64),
        "title_id": titles,
        "session_id": [session_id] * n,
        "device": [device] * n,
        "row_index": np.asarray(row_index, dtype=np.int32),
        "position": np.asarray(positions, dtype=np.int32),
        "artwork_id": np.asarray(choice.arms, dtype=np.int32),
        "propensity": np.asarray(choice.propensities, dtype=np.float32),
        "policy_version": [choice.policy_version] * n,
    }
    arrays = [
        pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
