"""Per-line lists in one pass: ``first_allowed_lists`` and the rows it makes equal the per-list paths."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from candidates.block import (
    RowBlock,
    finalize_flat,
    finalize_long,
    first_allowed_lists,
    padded,
    rows_of_lists,
)
from tests.candidates.test_block_search import first_allowed


def _same(a: RowBlock, b: RowBlock) -> bool:
    return (np.array_equal(a.profile, b.profile) and a.source == b.source and a.evidence == b.evidence
            and a.key == b.key and np.array_equal(a.offsets, b.offsets) and np.array_equal(a.positions, b.positions)
            and a.positions.dtype == b.positions.dtype and a.scores.dtype == b.scores.dtype
            and a.scores.tobytes() == b.scores.tobytes())


def test_padded_puts_each_list_on_a_line_then_the_fill() -> None:
    got = padded([np.array([3, 1]), np.zeros(0, np.int64), np.array([5, 6, 7])])
    assert got.tolist() == [[3, 1, -1], [-1, -1, -1], [5, 6, 7]] and got.dtype == np.int64
    scores = padded([np.array([0.5], np.float32), np.array([1.5, 2.5], np.float32)], fill=0)
    assert scores.dtype == np.float32 and scores.tolist() == [[0.5, 0.0], [1.5, 2.5]]
    assert padded([]).shape == (0, 0) and padded([np.zeros(0, np.int64)]).shape == (1, 0)


def _first_of_list(ok: np.ndarray, lines: np.ndarray, columns: np.ndarray, k: int) -> np.ndarray:
    """The definition: the first ``k`` titles of ``columns`` each line's ``ok`` allows (-1: none)."""
    return first_allowed((columns >= 0)[None, :] & ok[lines[:, None], np.maximum(columns, 0)[None, :]], k)


@pytest.mark.parametrize("seed", range(4))
def test_first_allowed_lists_equals_the_first_allowed_of_each_lines_list(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ok = rng.random((10, 200)) < rng.uniform(0.01, 0.9, (10, 1))  # some profiles blocked a lot
    lists = [rng.permutation(200)[: rng.integers(0, 150)] for _ in range(5)]  # of any length, one empty at times
    table = padded(lists)
    lines, which = rng.integers(0, 10, 30), rng.integers(0, 5, 30)
    want_line, want_col = [], []
    for i in range(30):
        keep = _first_of_list(ok, lines[i : i + 1], lists[which[i]], 6)
        want_col.append(np.flatnonzero(keep[0]))
        want_line.append(np.full(len(want_col[-1]), i))
    for first in (1, 6, 40, 500):
        line, col = first_allowed_lists(ok, lines, table, which, 6, first)
        assert np.array_equal(line, np.concatenate(want_line)) and np.array_equal(col, np.concatenate(want_col))
    line, col = first_allowed_lists(ok, lines, table[:1], None, 6, 7)  # None: every line reads the first list
    keep = _first_of_list(ok, lines, lists[0], 6)
    assert np.array_equal(line, np.nonzero(keep)[0]) and np.array_equal(col, np.nonzero(keep)[1])


def test_rows_of_lists_are_from_mask_of_the_same_titles() -> None:
    rng = np.random.default_rng(7)
    ok = rng.random((6, 80)) < 0.3
    lists = [rng.permutation(80)[:50], rng.permutation(80)[:20]]
    table, scores = padded(lists), padded([np.linspace(9, 1, 50, dtype=np.float32), np.arange(20, 0, -1, dtype=np.float32)])
    profiles, which = np.array([0, 1, 1, 4, 5]), np.array([1, 0, 1, 0, 1])
    line, col = first_allowed_lists(ok, profiles, table, which, 4, 4)
    got = rows_of_lists(line, col, profiles, table, which, scores, "s", ["a", "b", "c", "d", "e"], ["1", "2", "3", "4", "5"])
    keep = np.zeros((5, 50), bool)
    keep[line, col] = True
    want = RowBlock.from_mask(keep, profiles, table[which], scores[which], "s", ["a", "b", "c", "d", "e"],
                              ["1", "2", "3", "4", "5"])
    assert _same(got, want)


@pytest.mark.parametrize("seed", range(3))
def test_finalize_flat_is_finalize_long_of_the_same_lines(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ok = rng.random((5, 40)) < 0.7
    lengths = rng.integers(0, 30, 8)
    positions = [rng.integers(-1, 40, n) for n in lengths]  # repeats and -1 (not in the catalog)
    scores = [rng.integers(0, 5, n).astype(np.float32) for n in lengths]  # unsorted, with ties
    profile = rng.integers(0, 5, 8)
    block = SimpleNamespace(catalog=range(40))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for k in (1, 3, 50):
        want = finalize_long(block, profile, positions, scores, ok, k, "s", list("abcdefgh"), list("ABCDEFGH"))
        got = finalize_flat(block, profile, offsets, np.concatenate(positions), np.concatenate(scores), ok, k, "s",
                            list("abcdefgh"), list("ABCDEFGH"))
        assert _same(got, want)
