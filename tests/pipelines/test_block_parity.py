"""Parity of the block path with the per-profile path: scoring a block equals scoring each profile,
and the assembler's rows straight to ``CompactRows`` equal the ``Page`` it builds, byte for byte."""

from __future__ import annotations

import numpy as np
import torch

from pathways.artifacts.ranker import MLP, RankerArtifact
from pathways.config import PageConfig
from pathways.pageblob import encode_page
from pathways.types import Candidates, ProfileContext
from ranking.features import FEATURE_COLUMNS, RowScorer
from ranking.page import assemble_page, choose_rows, compact_page
from tests.ranking.test_row_scorer import FakeStore


def _mlp_scorer(catalog, ltr=None) -> RowScorer:
    torch.manual_seed(0)
    n = len(FEATURE_COLUMNS)
    art = RankerArtifact("mlp", list(FEATURE_COLUMNS), np.zeros(n, np.float32), np.ones(n, np.float32), MLP(n, 16).eval(), 16)
    return RowScorer(art, FakeStore(catalog), catalog, as_of_days=20_000.0, ltr=ltr, page=PageConfig(row_length=8, min_row_length=2))


def _world(catalog, n_profiles: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = catalog.title_ids
    profiles, rows = [], []
    for pid in range(1, n_profiles + 1):
        region, level = ("US", "BR", "GB")[pid % 3], int(rng.integers(0, 5))
        finished = frozenset(int(t) for t in rng.choice(ids, 3, replace=False))
        profiles.append(ProfileContext(pid, region, level, finished=finished))
        mine = []
        for source in ("als", "genre", "trending", "continue_watching", "top_picks"):
            for k in range(1 + pid % 3 if source == "genre" else 1):
                n = int(rng.integers(0, 25))
                picked = rng.choice(ids, n, replace=False)
                mine.append(Candidates(source, picked, np.sort(rng.random(n).astype(np.float32))[::-1], f"{source} {k}", str(k)))
        rows.append(mine)
    ltr = {pid: (rng.choice(ids, 12), rng.normal(size=12).astype(np.float32)) for pid in range(1, n_profiles, 2)}  # repeats
    return profiles, rows, ltr


def test_a_block_scores_exactly_as_each_profile_alone(catalog):
    profiles, rows, ltr = _world(catalog)
    block = _mlp_scorer(catalog, ltr).score_rows_block(profiles, rows)
    alone = [_mlp_scorer(catalog, ltr).score_rows(p, r) for p, r in zip(profiles, rows)]
    assert len(block) == len(alone) == len(profiles)
    for got, want in zip(block, alone):
        assert [r.row_id for r in got] == [r.row_id for r in want]
        for a, b in zip(got, want):
            assert np.array_equal(a.title_ids, b.title_ids) and np.array_equal(a.scores, b.scores)


def test_chosen_rows_encode_to_the_same_bytes_as_the_assembled_page(catalog):
    profiles, rows, ltr = _world(catalog, seed=1)
    scored = _mlp_scorer(catalog, ltr).score_rows_block(profiles, rows)
    config = PageConfig(row_length=8, min_row_length=2, dedupe_top_rows=3, max_rows=6)
    n_rows = 0
    for profile, candidates in zip(profiles, scored):
        page = assemble_page(candidates, profile, catalog, config)
        chosen = choose_rows(candidates, profile, catalog, config)
        assert encode_page(profile.cell, compact_page(chosen)) == encode_page(profile.cell, page)
        n_rows += len(chosen)
    assert n_rows > len(profiles)  # pages with several rows were compared
