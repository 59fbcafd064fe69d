"""Parity of the block path with the per-profile path: scoring a block equals scoring each profile,
and the assembler's rows straight to ``CompactRows`` equal the ``Page`` it builds, byte for byte."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from candidates.block import RowBlock
from pathways.artifacts.ranker import MLP, MLP_TILE, RankerArtifact
from pathways.config import PageConfig
from pathways.pageblob import encode_page
from pathways.types import Candidates, ProfileContext
from ranking import block_rank
from ranking.block_page import choose_block
from ranking.block_rank import _dense_unique, _sort_rows, rescore_block
from ranking.features import FEATURE_COLUMNS, TITLE_FEATURES, RowScorer
from ranking.page import assemble_page, choose_rows, compact_page
from ranking.rules import violations
from tests.ranking.test_row_scorer import FakeStore


def _mlp_scorer(catalog, ltr=None) -> RowScorer:
    torch.manual_seed(0)
    n = len(FEATURE_COLUMNS)
    art = RankerArtifact("mlp", list(FEATURE_COLUMNS), np.zeros(n, np.float32), np.ones(n, np.float32), MLP(n, 16).eval(), 16)
    return RowScorer(art, FakeStore(catalog), catalog, as_of_days=20_000.0, ltr=ltr, page=PageConfig(row_length=8, min_row_length=2))


def _world(catalog, n_profiles: int = 40, seed: int = 0, repeats: bool = False):
    """Profiles with candidate rows (``repeats``: rows may repeat a title, scores unsorted)."""
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
                picked = rng.choice(ids, n, replace=repeats)
                scores = rng.random(n).astype(np.float32) if repeats else np.sort(rng.random(n).astype(np.float32))[::-1]
                mine.append(Candidates(source, picked, scores, f"{source} {k}", str(k)))
        rows.append(mine)
    ltr = {pid: (rng.choice(ids, 12), rng.normal(size=12).astype(np.float32)) for pid in range(1, n_profiles + 1)}  # repeats
    # a title out of the catalog in a list (pid 4) after a listed profile of its cell (pid 2) with a
    # row holding the catalog's last title (where the unknown title's lookup key would land); an empty list
    last = int(catalog.title_ids[-1])
    rows[1].append(Candidates("als", np.array([last]), np.array([0.5], np.float32), "als x", "x"))
    ltr[2] = (ids[ids != last][:5], rng.normal(size=5).astype(np.float32))
    keep = ltr[4][0] != last
    ltr[4] = (np.append(ltr[4][0][keep], 10**9), np.append(ltr[4][1][keep], np.float32(4.0)))
    ltr[6] = (np.zeros(0, np.int64), np.zeros(0, np.float32))
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


def _row_block(catalog, rows: list[list[Candidates]]) -> RowBlock:
    flat = [(i, r) for i, rs in enumerate(rows) for r in rs]
    offsets = np.concatenate([[0], np.cumsum([len(r) for _, r in flat])]).astype(np.int64)
    return RowBlock(np.array([i for i, _ in flat], np.int64), tuple(r.source for _, r in flat),
                    tuple(r.evidence for _, r in flat), tuple(r.key for _, r in flat), offsets,
                    catalog.positions(np.concatenate([r.title_ids for _, r in flat])),
                    np.concatenate([r.scores for _, r in flat]).astype(np.float32))


def _gbdt_scorer(catalog, ltr=None) -> RowScorer:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    n = len(FEATURE_COLUMNS)
    X = rng.normal(size=(300, n)).astype(np.float32)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, (X[:, 0] + rng.normal(size=300)) > 0)
    art = RankerArtifact("gbdt", list(FEATURE_COLUMNS), np.zeros(n, np.float32), np.ones(n, np.float32), model)
    return RowScorer(art, FakeStore(catalog), catalog, as_of_days=20_000.0, ltr=ltr, page=PageConfig(row_length=8, min_row_length=2))


class ProfileStore(FakeStore):
    """``FakeStore`` whose profile features differ by profile (a read handed to the wrong profile
    changes its scores), counting the profiles read."""

    def __init__(self, catalog):
        super().__init__(catalog)
        self.reads: list[int] = []

    def online_profiles(self, ids, names=None):
        self.reads.append(len(ids))
        frame = super().online_profiles(ids, names)
        for j, f in enumerate(c for c in frame.columns if c not in ("profile_id", "genre_affinity")):
            frame[f] = [float((i * (j + 3)) % 17) for i in ids]
        if "genre_affinity" in frame:
            frame["genre_affinity"] = [[(i % 5) / 5, 1 - (i % 5) / 5] for i in ids]
        return frame


@pytest.mark.parametrize("shared", [False, True])
def test_cells_sharing_a_store_read_the_block_once_and_score_as_alone(catalog, shared):
    """With one store for every cell (as ``PageBuilder.open`` makes them), the block's profile
    features are one read; each profile still gets its own features (the per-profile scores)."""
    profiles, rows, ltr = _world(catalog, seed=3)
    profiles = [replace(p, cell=("control", "challenger")[p.profile_id % 2]) for p in profiles]
    store = ProfileStore(catalog)
    scorers = {"control": replace(_gbdt_scorer(catalog, ltr), store=store),
               "challenger": replace(_mlp_scorer(catalog), store=store if shared else ProfileStore(catalog))}
    config = PageConfig(row_length=8, min_row_length=2, dedupe_top_rows=3, max_rows=6)
    block = rescore_block(scorers, [p.cell for p in profiles], profiles, _row_block(catalog, rows))
    assert store.reads == ([len(profiles)] if shared else [len(profiles) // 2])
    blobs = choose_block(block, profiles, catalog, config).encode([p.cell for p in profiles])
    for profile, candidates, blob in zip(profiles, rows, blobs):
        want = assemble_page(scorers[profile.cell].score_rows(profile, candidates), profile, catalog, config)
        assert blob == encode_page(profile.cell, want)


@pytest.mark.parametrize("repeats", [False, True])
@pytest.mark.parametrize("make_scorer", [_mlp_scorer, _gbdt_scorer])
@pytest.mark.parametrize("config", [PageConfig(row_length=8, min_row_length=2, dedupe_top_rows=3, max_rows=6),
                                    PageConfig(row_length=5, min_row_length=4, dedupe_top_rows=0, max_rows=40),
                                    PageConfig(row_length=8, min_row_length=1, dedupe_top_rows=40, max_rows=3)])
def test_the_block_path_builds_the_pages_of_the_per_profile_loop(catalog, make_scorer, config, repeats):
    """Re-scoring (``rescore_block``) and assembly (``choose_block``) over a whole block give every
    profile the bytes of ``score_rows`` + ``assemble_page`` for it alone; the hard rules hold on
    every title of the block path's pages although the candidate rows break them (and, with
    ``repeats``, repeat titles within a row: each is shown once, as the loop shows it)."""
    profiles, rows, ltr = _world(catalog, seed=2, repeats=repeats)
    cells = ("control", "challenger")
    profiles = [replace(p, cell=cells[p.profile_id % 2]) for p in profiles]
    scorers = {"control": make_scorer(catalog, ltr), "challenger": _mlp_scorer(catalog)}
    block = _row_block(catalog, rows)
    block = rescore_block(scorers, [p.cell for p in profiles], profiles, block)
    pages = choose_block(block, profiles, catalog, config)
    blobs = pages.encode([p.cell for p in profiles])
    broken = 0
    for i, (profile, candidates) in enumerate(zip(profiles, rows)):
        want = assemble_page(scorers[profile.cell].score_rows(profile, candidates), profile, catalog, config)
        page = pages.compact(i)
        assert blobs[i] == encode_page(profile.cell, page) == encode_page(profile.cell, want)
        assert pages.n_rows(i) == len(want.rows)
        assert not violations(catalog, page.title_ids.tolist(), profile.region, profile.max_maturity_level, profile.finished)
        broken += len(violations(catalog, np.concatenate([c.title_ids for c in candidates]).tolist(), profile.region,
                                 profile.max_maturity_level, profile.finished))
    assert broken > 0  # the rows offered titles the rules forbid: the block path removed them
    assert sum(pages.n_rows(i) for i in range(len(pages))) > len(profiles)


def test_rows_sort_as_a_stable_lexsort_does():
    """``_sort_rows`` (one padded sort per block) orders the chosen rows as ``np.lexsort`` by row and
    descending score would (ties in place, NaN last) and leaves the other rows untouched."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 9, 30)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    scores = rng.integers(0, 4, offsets[-1]).astype(np.float32)
    scores[rng.random(len(scores)) < 0.1] = np.nan
    rows = np.flatnonzero(rng.random(30) < 0.7)
    chosen = np.isin(np.repeat(np.arange(30), lengths), rows)
    row = np.repeat(np.arange(30), lengths)
    want = np.lexsort((np.where(chosen, -scores, np.float32(0)), row))
    assert np.array_equal(_sort_rows(scores, offsets, rows), want)


@pytest.mark.parametrize("size", [500, 500_000])  # keys filling the space (a scatter), or sparse in it (a sort)
def test_dense_unique_is_np_unique(size):
    keys = np.random.default_rng(4).integers(0, size, 2_000)
    got, inverse = _dense_unique(keys, size)
    want, want_inverse = np.unique(keys, return_inverse=True)
    assert np.array_equal(got, want) and np.array_equal(inverse, want_inverse) and inverse.shape == keys.shape


@pytest.mark.parametrize("grouped", [True, False])
def test_dense_unique_by_windows_of_groups_is_np_unique(monkeypatch, grouped):
    """Keys that come group by group (a block's pairs, profile by profile) are found one window of
    groups at a time (a window here: 3 groups of 50, so 7 windows); keys out of group order in one."""
    monkeypatch.setattr(block_rank, "_WINDOW", 160)
    rng = np.random.default_rng(6)
    groups = np.sort(rng.integers(0, 20, 600)) if grouped else rng.integers(0, 20, 600)
    keys = groups * 50 + rng.integers(0, 50, 600)  # repeats within and across groups, any order in a group
    got, inverse = _dense_unique(keys, 20 * 50, 50)
    want, want_inverse = np.unique(keys, return_inverse=True)
    assert np.array_equal(got, want) and np.array_equal(inverse, want_inverse)
    empty, none = _dense_unique(np.zeros(0, np.int64), 0, 50)
    assert empty.shape == none.shape == (0,)


def test_the_compiled_tile_loop_is_the_modules_own_forward(catalog):
    """``predict_segments`` runs the MLP's layers through TorchScript (no GIL between tiles): each
    row's P(play) is, to the bit, ``sigmoid(model(tile))`` of the standardized rows in tiles of
    ``MLP_TILE``, the last padded with zero rows."""
    ranker = _mlp_scorer(catalog).ranker
    ranker.mean = np.linspace(-1, 1, len(FEATURE_COLUMNS)).astype(np.float32)
    ranker.std = np.linspace(0.5, 2, len(FEATURE_COLUMNS)).astype(np.float32)
    X = np.random.default_rng(7).normal(size=(MLP_TILE + 300, len(FEATURE_COLUMNS))).astype(np.float32)
    X[::11, 2] = np.inf
    Z = (X - ranker.mean) / ranker.std
    Z[~np.isfinite(Z)] = 0.0
    padded = np.concatenate([Z, np.zeros((MLP_TILE - 300, Z.shape[1]), np.float32)])
    with torch.inference_mode():
        want = np.concatenate([torch.sigmoid(ranker.model(torch.from_numpy(padded[a:a + MLP_TILE]))).numpy()
                               for a in range(0, len(padded), MLP_TILE)])[:len(X)]
    assert np.array_equal(ranker.predict_segments(X, np.array([0, 3, 3, 150, len(X)])), want)
    with pytest.raises(ValueError, match="segment bounds"):
        ranker.predict_segments(X, np.array([0, 150]))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_rows_mlp_score_does_not_depend_on_its_place_or_neighbours(catalog, threads):
    """What lets the block path score a block's rows together: a row's bits are the same alone, at
    any place of a tile, in the first or a later tile, beside any other rows."""
    ranker = _mlp_scorer(catalog).ranker
    rng = np.random.default_rng(8)
    row = rng.normal(size=(1, len(FEATURE_COLUMNS))).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = ranker.predict(row)[0]
        for n, at in [(2, 0), (7, 6), (MLP_TILE, 0), (MLP_TILE, MLP_TILE - 1), (MLP_TILE + 5, MLP_TILE + 2),
                      (3 * MLP_TILE - 1, MLP_TILE // 2), (3 * MLP_TILE - 1, 2 * MLP_TILE + 17)]:
            X = rng.normal(size=(n, len(FEATURE_COLUMNS))).astype(np.float32)
            X[at] = row[0]
            assert ranker.predict(X)[at].tobytes() == alone.tobytes(), (n, at)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("make_scorer", [_mlp_scorer, _gbdt_scorer])
def test_a_block_of_segments_predicts_each_segment_alone(catalog, make_scorer):
    """``predict_segments`` (the block path) equals ``predict`` on each segment (the loop), to the bit."""
    ranker = make_scorer(catalog).ranker
    X = np.random.default_rng(5).normal(size=(500, len(FEATURE_COLUMNS))).astype(np.float32)
    X[::7, 3] = np.nan
    bounds = np.array([0, 1, 1, 120, 121, 380, 500])
    want = np.concatenate([ranker.predict(X[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
    assert np.array_equal(ranker.predict_segments(X, bounds), want)


class VariedStore(ProfileStore):
    """``ProfileStore`` with title features and trending that vary by title and region, some
    missing (NaN), infinite or negative, and profiles without a genre affinity or with one of another
    length: every column's standardization and every non-finite value is exercised."""

    def online_titles(self, ids):
        frame = super().online_titles(ids)
        for j, f in enumerate(TITLE_FEATURES):
            frame[f] = [(np.nan if (i + j) % 11 == 0 else np.inf if (i + j) % 13 == 0 else float((i * (j + 2)) % 23 - 3))
                        for i in ids]
        return frame

    def online_trending(self, keys):
        codes = [int(k.split(":")[0]) * (3 + ord(k[-1])) for k in keys]  # keys are "title:region"
        return pd.DataFrame({"title_region": keys, "trending_score": [float(c % 7) if c % 5 else np.nan for c in codes]})

    def online_profiles(self, ids, names=None):
        frame = super().online_profiles(ids, names)
        if "plays_28d" in frame:
            frame["plays_28d"] = [np.nan if i % 4 == 0 else float(i % 9) for i in ids]
        if "genre_affinity" in frame:
            frame["genre_affinity"] = [None if i % 6 == 0 else [0.1, 0.2, 0.7] if i % 6 == 1 else [(i % 5) / 5, 1 - (i % 5) / 5]
                                       for i in ids]
        return frame


@pytest.mark.filterwarnings("ignore:.*log1p:RuntimeWarning")  # negative counts: log1p is -inf or NaN, as in the loop
@pytest.mark.parametrize("make_scorer", [_mlp_scorer, _gbdt_scorer])
def test_a_standardizing_ranker_scores_the_block_as_each_profile_alone(catalog, make_scorer):
    """A ranker whose standardization is not the identity, over features with NaN, inf and missing
    affinities: the block path standardizes each title's, region's and profile's values before
    gathering the pairs (``RankerArtifact.standardize``), the loop standardizes the pairs' matrix;
    the same scores and orders to the bit, in every cell."""
    profiles, rows, ltr = _world(catalog, seed=5)
    cells = ("control", "challenger")
    profiles = [replace(p, cell=cells[p.profile_id % 2]) for p in profiles]
    scorers = {"control": replace(make_scorer(catalog, ltr), store=VariedStore(catalog)),
               "challenger": replace(make_scorer(catalog), store=VariedStore(catalog))}
    for j, scorer in enumerate(scorers.values()):
        scorer.ranker.mean = np.linspace(-2, 3, len(FEATURE_COLUMNS)).astype(np.float32) + j
        scorer.ranker.std = np.linspace(0.25, 4, len(FEATURE_COLUMNS)).astype(np.float32)
    block = rescore_block(scorers, [p.cell for p in profiles], profiles, _row_block(catalog, rows))
    r = 0
    for profile, candidates in zip(profiles, rows):
        for want in scorers[profile.cell].score_rows(profile, candidates):
            got = slice(block.offsets[r], block.offsets[r + 1])
            assert np.array_equal(catalog.title_ids[block.positions[got]], want.title_ids)
            assert block.scores[got].tobytes() == np.asarray(want.scores, np.float32).tobytes()
            r += 1
    assert r == len(block)


def test_list_zscores_standardize_each_list_as_alone():
    """``_list_zscores`` (the two sums of each list over its own slice) equals ``(v - v.mean()) /
    (v.std() + 1e-6)`` of each list alone to the bit: lengths on both sides of numpy's pairwise
    summation steps (8, 128, 256), repeated and extreme values, NaN and inf."""
    rng = np.random.default_rng(11)
    lengths = np.array([1, 2, 7, 8, 9, 15, 16, 17, 127, 128, 129, 130, 255, 256, 257, 300, 405, 1000])
    lists = [(rng.normal(size=n) * 10.0 ** rng.uniform(-3, 6)).astype(np.float32) for n in rng.permutation(lengths)]
    lists += [rng.integers(-2, 3, n).astype(np.float32) for n in (5, 40, 200)]
    lists[3][2], lists[5][0], lists[-1][7] = np.nan, np.inf, -np.inf
    bounds = np.concatenate([[0], np.cumsum([len(v) for v in lists])]).astype(np.int64)
    with np.errstate(invalid="ignore"):
        want = np.concatenate([(v - v.mean()) / (v.std() + 1e-6) for v in lists])
        got = block_rank._list_zscores(np.concatenate(lists), bounds)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()


def test_rows_sort_special_scores_as_a_stable_argsort_does():
    """``_sort_rows``' integer keys order -0.0 and 0.0 as equal (their ties kept in place), inf and
    -inf at the ends and NaN of either sign last, as numpy's stable sort of the negated scores."""
    rng = np.random.default_rng(12)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 1e-45, -1e-45, 3e38], np.float32)
    lengths = rng.integers(0, 12, 200)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    scores = rng.choice(special, offsets[-1])
    rows = np.flatnonzero(rng.random(200) < 0.8)
    row = np.repeat(np.arange(200), lengths)
    chosen = np.isin(row, rows)
    want = np.lexsort((np.where(chosen, -scores, np.float32(0)), row))
    assert np.array_equal(_sort_rows(scores, offsets, rows), want)


def test_the_block_path_reads_a_top_lists_file_as_its_dict(catalog, tmp_path):
    """With the lists in a Parquet file (``TopListsReader``, several row groups), the block path
    reads its profiles' lists at once (``TopListsReader.many``) and scores as with the dict; the
    bulk read holds each profile's list, an empty one for a profile without."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pathways.artifacts.top_lists import SCHEMA, TopListsReader, flat_lists

    profiles, rows, ltr = _world(catalog, seed=7)
    del ltr[9]
    ids = sorted(ltr, key=lambda p: (p % 3, p))  # row groups out of id order
    pq.write_table(pa.table({"profile_id": ids, "title_ids": [ltr[p][0].tolist() for p in ids],
                             "scores": [ltr[p][1].tolist() for p in ids]}, schema=SCHEMA), tmp_path / "lists.parquet",
                   row_group_size=6)
    reader = TopListsReader(tmp_path / "lists.parquet", cache_groups=2)
    asked = np.array([9, 3, 1, 40, 6, 2, 10**6, 14, 27], np.int64)
    for got, want in zip(flat_lists(reader, asked), flat_lists(ltr, asked)):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert np.diff(flat_lists(reader, asked)[0]).tolist() == [len(ltr[p][0]) if p in ltr else 0 for p in asked.tolist()]
    block = _row_block(catalog, rows)
    cells = ["control"] * len(profiles)
    by_dict = rescore_block({"control": _mlp_scorer(catalog, ltr)}, cells, profiles, block)
    by_file = rescore_block({"control": _mlp_scorer(catalog, reader)}, cells, profiles, block)
    assert np.array_equal(by_dict.positions, by_file.positions) and by_dict.scores.tobytes() == by_file.scores.tobytes()
