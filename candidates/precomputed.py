"""A row computed offline for each profile (e.g. the learning-to-rank top row), served as is.

``lists`` maps profile id -> (title ids, scores), best first, as the nightly job wrote them to
Parquet (``profile_id: int64, title_ids: list<int64>, scores: list<float32>``). The row still
goes through the hard rules and drops titles the profile already played.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from candidates.base import finalize
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext

SCHEMA = pa.schema([("profile_id", pa.int64()), ("title_ids", pa.list_(pa.int64())), ("scores", pa.list_(pa.float32()))])


def write_lists(path: Path, profile_ids: np.ndarray, title_ids: list[np.ndarray], scores: list[np.ndarray]) -> Path:
    table = pa.table(
        {
            "profile_id": pa.array(np.asarray(profile_ids, np.int64)),
            "title_ids": pa.array([np.asarray(t, np.int64) for t in title_ids], pa.list_(pa.int64())),
            "scores": pa.array([np.asarray(s, np.float32) for s in scores], pa.list_(pa.float32())),
        },
        schema=SCHEMA,
    )
    pq.write_table(table, path)
    return path


def read_lists(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    table = pq.read_table(path, schema=SCHEMA)
    return {
        int(p): (np.asarray(t, np.int64), np.asarray(s, np.float32))
        for p, t, s in zip(table.column("profile_id").to_pylist(), table.column("title_ids").to_pylist(),
                           table.column("scores").to_pylist(), strict=True)
    }


class PrecomputedSource:
    """One row per profile from ``lists``; profiles without a list get no row."""

    serves_cohorts = False

    def __init__(self, lists: dict[int, tuple[np.ndarray, np.ndarray]], catalog: Catalog, config: CandidateConfig,
                 name: str, evidence: str):
        self.lists = lists
        self.catalog = catalog
        self.config = config
        self.name = name
        self.evidence = evidence

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        got = self.lists.get(int(profile.profile_id))
        if got is None or len(got[0]) == 0:
            return []
        cands = Candidates(self.name, got[0], got[1], evidence=self.evidence)
        row = finalize(cands, self.catalog, profile, self.config.per_source, exclude=profile.history)
        return [row] if len(row) else []
