"""PrecomputedSource: Parquet round trip, order kept, rules and history applied."""

from __future__ import annotations

import numpy as np

from candidates.precomputed import PrecomputedSource
from pathways.artifacts.top_lists import TopLists
from pathways.config import CandidateConfig
from pathways.types import ProfileContext
from ranking.rules import violations


def test_round_trip_and_rules(tmp_path, catalog):
    ids = catalog.title_ids[:20][::-1]
    saved = TopLists.from_arrays(np.array([1, 2]), [ids, ids[:3]], [np.linspace(1, 0, 20), np.ones(3)])
    lists = TopLists.load(saved.save(tmp_path / "top.parquet")).lists
    assert lists[1][0].tolist() == ids.tolist()
    src = PrecomputedSource(lists, catalog, CandidateConfig(per_source=10), "top_picks", "Your top picks")
    kid = ProfileContext(1, "US", 1, history=(int(ids[0]),))
    (row,) = src.generate(kid)
    got = row.title_ids.tolist()
    assert len(got) <= 10 and int(ids[0]) not in got
    assert violations(catalog, got, "US", 1) == []
    assert got == [t for t in ids.tolist() if t in got]  # the offline order is kept
    assert src.generate(ProfileContext(3, "US", 4)) == []
