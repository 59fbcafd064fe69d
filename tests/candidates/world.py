"""A tiny hand-built world whose right answers are known, shared by the candidate tests.

Titles 101-112 form block A (Animation/Comedy, kids-rated except 112), titles 113-124 block B
(Horror/Drama, teen or mature). Profiles 1-8 (US) only play block A, 9-16 (US) only block B;
20 is an adult in BR, 30 a kids profile in GB. Licences: 105 and 117 only in BR, 108 only in US.
Releases: 121-124 within the last 30 days of AS_OF (124 a day after AS_OF: not out yet).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA, TITLE_SCHEMA
from pathways.artifacts.factors import FactorArtifacts
from pathways.catalog import Catalog
from pathways.config import CandidateConfig, TrainingConfig
from pathways.types import ProfileContext

AS_OF = datetime(2026, 10, 29, tzinfo=UTC)
T0 = AS_OF - timedelta(days=28)
BLOCK_A = tuple(range(101, 113))
BLOCK_B = tuple(range(113, 125))
CONFIG = CandidateConfig(per_source=5, because_you_watched_rows=2, genre_rows=2, new_release_days=30)
# Two blocks: rank 2 is the right model (more factors on 18 profiles overfit and blur the blocks).
TRAIN = TrainingConfig(als_factors=2, als_iterations=12, als_regularization=0.1, als_alpha=10.0, seed=3)


def _title(tid: int) -> dict[str, Any]:
    in_a = tid in BLOCK_A
    i = tid - 101
    if in_a:
        genres = ["Animation"] if i % 2 == 0 else ["Comedy"]
        maturity = 3 if tid == 112 else i % 2
    else:
        genres = ["Horror"] if i % 2 == 0 else ["Drama"]
        maturity = 2 if i % 3 == 0 else 3
    regions = ["BR"] if tid in (105, 117) else (["US"] if tid == 108 else ["US", "BR", "GB"])
    released = AS_OF.date() - timedelta(days=(-1 if tid == 124 else 5 * (125 - tid) if tid >= 121 else 400 + tid))
    return {
        "title_id": tid,
        "name": f"Title {tid}",
        "genres": genres,
        "cast": [],
        "release_date": released,
        "runtime_min": 100,
        "maturity_level": maturity,
        "regions": regions,
        "artwork_ids": [0],
        "artwork_themes": ["genre"],
    }


def titles_table() -> pa.Table:
    return pa.Table.from_pylist([_title(t) for t in BLOCK_A + BLOCK_B], schema=TITLE_SCHEMA)


def profiles_table() -> pa.Table:
    rows = [(p, "US", 4, False) for p in range(1, 17)] + [(20, "BR", 4, False), (30, "GB", 1, True)]
    return pa.Table.from_pylist(
        [
            {"profile_id": p, "account_id": p, "is_kids": kids, "region": region, "max_maturity_level": level,
             "devices": ["tv"], "created_at": T0 - timedelta(days=60)}
            for p, region, level, kids in rows
        ],
        schema=PROFILE_SCHEMA,
    )


def event(n: int, profile_id: int, title_id: int, ts: datetime, fraction: float | None = 1.0, kind: str = "play") -> dict[str, Any]:
    row: dict[str, Any] = {f.name: None for f in EVENT_SCHEMA}
    row.update(event_id=f"e{n}", event_type=kind, ts=ts, profile_id=profile_id, title_id=title_id,
               fraction_watched=fraction, session_id=f"s{n}", device="tv")
    return row


def events_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def block_events(seed: int = 5) -> pa.Table:
    """Profiles 1-8 play 7 random block-A titles each, 9-16 block-B; 20 and 30 a few titles."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for p in range(1, 17):
        block = BLOCK_A if p <= 8 else BLOCK_B
        for t in rng.choice(block, size=7, replace=False):
            ts = T0 + timedelta(hours=float(rng.uniform(0, 27 * 24)))
            rows.append(event(len(rows), p, int(t), ts, float(rng.uniform(0.3, 1.0))))
    for p, t in ((20, 113), (20, 114), (20, 105), (30, 101), (30, 103)):
        rows.append(event(len(rows), p, t, AS_OF - timedelta(days=1), 0.8))
    rows.append(event(len(rows), 3, 101, AS_OF + timedelta(days=1)))  # after AS_OF: ignored by trending
    return events_table(rows)


@cache
def catalog() -> Catalog:
    return Catalog.from_table(titles_table())


@cache
def events() -> pa.Table:
    return block_events()


@cache
def als() -> FactorArtifacts:
    from training.als import fit_als

    return fit_als(events(), TRAIN, num_threads=1)


def profiles() -> list[ProfileContext]:
    """Hand-picked profiles that stress the rules: kids, another region, finished titles, cold."""
    return [
        ProfileContext(1, "US", 4, history=(101, 103, 112, 105), finished=frozenset({101}),
                       in_progress={103: 0.5, 112: 0.3, 105: 0.2}, in_progress_ts={103: 10.0, 112: 20.0, 105: 30.0}),
        ProfileContext(9, "US", 4, history=(113, 115, 117, 121), finished=frozenset({121})),
        ProfileContext(20, "BR", 4, history=(113, 114, 105), in_progress={105: 0.4}, in_progress_ts={105: 5.0}),
        ProfileContext(30, "GB", 1, is_kids=True, history=(101, 103, 113), finished=frozenset({103}),
                       in_progress={113: 0.5, 102: 0.5}, in_progress_ts={113: 1.0, 102: 2.0}),
        ProfileContext(99, "JP", 2, known=False),
        ProfileContext(2, "GB", 0, history=(102, 104, 108)),
    ]
