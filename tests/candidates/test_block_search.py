"""The block path's prefix reads: the first allowed titles of a few results equal those of the whole list."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from candidates.block import (
    _bucket,
    first_allowed_lists,
    first_fetch,
    first_fetch_lines,
    lookup,
    nonzero_2d,
    running_count,
    search_first_allowed,
)
from pathways.artifacts.factor_index import FactorIndex


def first_allowed(ok: np.ndarray, k: int) -> np.ndarray:
    """The definition: the first ``k`` True of each line of ``ok``."""
    return ok & (np.cumsum(ok, axis=1) <= k)


def _world(seed: int, n_items: int = 300, n_lines: int = 40, n_profiles: int = 12):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, 8)).astype(np.float32)
    ok = rng.random((n_profiles, n_items)) < rng.uniform(0.02, 0.9, (n_profiles, 1))  # some profiles blocked a lot
    line_profile = rng.integers(0, n_profiles, n_lines)
    query = rng.integers(0, 10, n_lines)  # queries repeat across lines
    item_positions = rng.permutation(n_items + 5)[:n_items] - 5  # a few items not in the catalog (-1..-5 -> -1)
    item_positions = np.where(item_positions < 0, -1, item_positions).astype(np.int64)
    ks = rng.integers(1, 2 * n_items, n_lines)  # may ask for more results than the index holds
    return vectors, ok, line_profile, query, item_positions, ks


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("first_k", [1, 7, 1000, "per line"])
def test_search_first_allowed_equals_one_search_of_every_lines_k(seed: int, first_k: int | str) -> None:
    vectors, ok_mask, line_profile, query, item_positions, ks = _world(seed)
    if first_k == "per line":  # each line its own first read, from 1 to past the index: several sizes a round
        first_k = np.random.default_rng(seed).integers(1, 400, len(query))
    index, k = FactorIndex(vectors), 5

    def allowed(lines: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return ok_mask[line_profile[lines][:, None], np.maximum(pos, 0)]

    scores, rows = index.search(vectors[query], int(ks.max()))  # what the block path did before
    within = (np.arange(rows.shape[1]) < ks[:, None]) & (rows >= 0)
    pos = np.where(within, item_positions[np.maximum(rows, 0)], -1)
    keep = first_allowed((pos >= 0) & allowed(np.arange(len(query)), pos), k)
    got_pos, got_scores = search_first_allowed(index, vectors, query, ks, item_positions, allowed, k, first_k)
    for i in range(len(query)):
        n = int(keep[i].sum())
        assert got_pos[i, :n].tolist() == pos[i][keep[i]].tolist()
        assert np.array_equal(got_scores[i, :n], scores[i][keep[i]])  # to the bit
        assert (got_pos[i, n:] == -1).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_faiss_top_m_is_the_prefix_of_top_n_whatever_the_batch(threads: int) -> None:
    """What ``search_first_allowed`` relies on: fewer results are the first of more, and a query's
    scores do not depend on the other queries of its batch (BLAS kernel, padded tiles), on one
    thread (the page builders) and on two."""
    with threadpool_limits(threads):
        _top_m_is_the_prefix_of_top_n_whatever_the_batch()


def _top_m_is_the_prefix_of_top_n_whatever_the_batch() -> None:
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(2_000, 16)).astype(np.float32)
    vectors[100:110] = vectors[5]  # exact ties
    index = FactorIndex(vectors)
    queries = rng.normal(size=(64, 16)).astype(np.float32)
    scores, rows = index.search(queries, 400)
    for m in (1, 30, 99, 100, 250):
        few_scores, few_rows = index.search(queries, m)
        assert np.array_equal(few_rows, rows[:, :m]) and np.array_equal(few_scores, scores[:, :m])
    for n in (1, 3, 19, 20, 21):
        one_scores, one_rows = index.search(queries[:n], 400)
        assert np.array_equal(one_rows, rows[:n]) and np.array_equal(one_scores, scores[:n])
    for part in (slice(37, 38), slice(5, 64, 3), slice(50, 64), slice(9, 26)):  # lone and ragged, off the tiles
        part_scores, part_rows = index.search(queries[part], 400)
        assert np.array_equal(part_rows, rows[part]) and np.array_equal(part_scores, scores[part])


@pytest.mark.parametrize("seed", range(4))
def test_first_allowed_lists_of_one_list_equals_first_allowed_over_the_whole_list(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ok = rng.random((10, 200)) < rng.uniform(0.01, 0.9, (10, 1))
    lines = rng.integers(0, 10, 25)
    columns = rng.permutation(220)[:150] - 20
    columns = np.where(columns < 0, -1, columns)  # -1: never allowed
    want = first_allowed((columns >= 0)[None, :] & ok[lines[:, None], np.maximum(columns, 0)[None, :]], 6)
    for first in (1, 6, 40, 500):
        line, col = first_allowed_lists(ok, lines, columns[None, :], None, 6, first)
        got = np.zeros_like(want)
        got[line, col] = True
        assert np.array_equal(got, want) and np.array_equal(line, np.nonzero(want)[0])


def test_first_fetch_lines_scales_what_a_line_needs_by_the_share_its_cohort_allows() -> None:
    got = first_fetch_lines(10, np.array([0, 6, 0, 0]), np.array([1.0, 1.0, 0.25, 0.0]))
    assert got.tolist() == [13, 20, 50, 12_500]  # 1.25 x (k + seen) / share; a share of 0 counts as 0.001


def test_bucket_rounds_up_to_at_most_one_and_a_half_times_and_few_sizes() -> None:
    want = np.arange(1, 50_000)
    got = _bucket(want)
    assert (got >= want).all() and (got <= 1.5 * np.maximum(want, 64)).all()
    assert (np.diff(got) >= 0).all() and len(np.unique(got)) <= 25
    assert _bucket(np.array([1, 64, 65, 96, 97, 129, 260])).tolist() == [64, 64, 96, 96, 128, 192, 384]


def test_allowed_share_is_the_part_of_an_index_a_profiles_cohort_may_show() -> None:
    from candidates.base import CohortRules
    from candidates.block import ProfileBlock
    from pathways.types import ProfileContext
    from tests.candidates import world

    catalog = world.catalog()
    rules = CohortRules(catalog)
    kids, adult = ProfileContext(1, "BR", 1), ProfileContext(2, "BR", 4)
    block = ProfileBlock([kids, adult, kids], catalog, rules)
    items = np.array([-1, *range(len(catalog))], np.int64)  # one item outside the catalog: never allowed
    share = block.allowed_share(items)
    for i, p in enumerate([kids, adult, kids]):
        assert share[i] == pytest.approx(rules.mask(p.region, p.max_maturity_level).sum() / len(items))
    assert share[0] < share[1]  # a kids profile's maturity blocks more
    twice = np.array([0, 0, 1, -1], np.int64)  # an item of the catalog twice counts twice
    want = [(2 * rules.mask(p.region, p.max_maturity_level)[0] + rules.mask(p.region, p.max_maturity_level)[1]) / 4
            for p in (kids, adult, kids)]
    assert block.allowed_share(twice).tolist() == pytest.approx(want)


def test_first_fetch_covers_the_seen_titles_twice() -> None:
    assert first_fetch(10, np.array([0, 3, 1])) == 26
    assert first_fetch(10, np.zeros(0, np.int64)) == 20


@pytest.mark.parametrize("shape", [(7, 13), (1, 5), (4, 1), (0, 6), (3, 0)])
def test_nonzero_2d_is_numpys_nonzero(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(sum(shape)).random(shape) < 0.4
    line, col = nonzero_2d(mask)
    want_line, want_col = np.nonzero(mask)
    assert np.array_equal(line, want_line) and np.array_equal(col, want_col)
    assert line.dtype == want_line.dtype


@pytest.mark.parametrize("shape", [(7, 13), (1, 5), (0, 6), (3, 0)])
def test_running_count_is_numpys_cumsum_of_the_mask(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(sum(shape) + 1).random(shape) < 0.6
    got = running_count(mask, axis=1)
    assert got.dtype == np.int32 and np.array_equal(got, np.cumsum(mask, axis=1))
    assert np.array_equal(running_count(mask.ravel()), np.cumsum(mask.ravel()))


def test_lookup_reads_a_mask_as_2d_fancy_indexing_does() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((7, 50)) < 0.5
    lines = np.array([6, 0, 0, 3])  # repeated, unsorted
    per_line = rng.integers(-1, 50, (4, 9))  # -1 (not in the catalog) reads column 0
    shared = rng.integers(-1, 50, 9)
    np.testing.assert_array_equal(lookup(mask, lines, per_line), mask[lines[:, None], np.maximum(per_line, 0)])
    np.testing.assert_array_equal(lookup(mask, lines, shared), mask[lines[:, None], np.maximum(shared, 0)[None, :]])
    assert lookup(mask, lines, shared).shape == (4, 9) and lookup(mask, lines[:0], shared).shape == (0, 9)


def _maturity_world(seed: int):
    from tests.candidates import world

    catalog = world.catalog()
    rng = np.random.default_rng(seed)
    item_positions = np.array([-1, *rng.permutation(len(catalog))], np.int64)  # one item outside the catalog
    vectors = rng.normal(size=(len(item_positions), 8)).astype(np.float32)
    return catalog, item_positions, vectors


def test_level_indexes_give_a_closed_ceiling_its_own_titles_and_open_ones_the_whole_index() -> None:
    from candidates.block import MIN_CUT, LevelIndexes

    catalog, item_positions, vectors = _maturity_world(0)
    index = FactorIndex(vectors, normalize=True)
    levels = LevelIndexes(index, item_positions, catalog)
    maturity = np.where(item_positions >= 0, catalog.maturity[np.maximum(item_positions, 0)], 99)
    own = 0
    for level in np.unique(catalog.maturity).tolist():
        sub, rows, positions = levels.entry(level)
        allowed = np.flatnonzero(maturity <= level)
        if len(allowed) <= (1 - MIN_CUT) * len(index):
            own += 1
            assert rows.tolist() == allowed.tolist() and positions.tolist() == item_positions[allowed].tolist()
            assert np.array_equal(sub.vectors, index.vectors[allowed]) and sub.normalize  # unit vectors, kept as they are
        else:
            assert sub is index and rows is None and positions is item_positions
    assert own >= 2  # the test world has closed ceilings (0, 1, 2) and an open one (3)
    assert levels.entry(int(catalog.maturity.min()) - 1) is None  # below every title: nothing to search
    assert levels.entry(99)[0] is index  # above every title: all of them
    groups = levels.groups(np.array([3, 1, 3, 9, 1, -1]))  # 3 and 9 search the same (whole) index
    assert sorted(lines.tolist() for lines, _ in groups) == [[0, 2, 3], [1, 4]]


@pytest.mark.parametrize("seed", range(4))
def test_search_by_level_finds_what_one_search_of_the_whole_index_finds(seed: int) -> None:
    from candidates.block import LevelIndexes, search_by_level

    catalog, item_positions, vectors = _maturity_world(seed)
    rng = np.random.default_rng(seed)
    n_lines, k = 60, 4
    line_level = rng.choice([-1, 0, 1, 2, 3, 4], n_lines)
    unseen = rng.random((n_lines, len(catalog))) < 0.8
    ok = unseen & (catalog.maturity[None, :] <= line_level[:, None])
    query = rng.integers(0, len(vectors), n_lines)
    ks = np.full(n_lines, len(vectors))
    index = FactorIndex(vectors)

    def allowed(lines: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return ok[lines[:, None], np.maximum(pos, 0)]

    want_pos, want_scores = search_first_allowed(index, vectors, query, ks, item_positions, allowed, k, 1)
    fetched = []

    def first_k(lines: np.ndarray, positions: np.ndarray) -> np.ndarray:
        fetched.append(len(positions))
        return np.ones(len(lines), np.int64)

    got_pos, got_scores = search_by_level(LevelIndexes(index, item_positions, catalog), line_level, vectors, query, ks,
                                          allowed, k, first_k)
    assert got_pos.tolist() == want_pos.tolist()
    assert np.allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    assert (got_pos[line_level < 0] == -1).all() and sorted(fetched)[0] < len(vectors)  # kids lines: fewer titles
