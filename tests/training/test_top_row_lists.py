"""The top row's lists are written block by block and read back as one ``TopLists``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathways.artifacts.top_lists import TopLists
from training.top_row import write_lists


class _Model:
    """Candidates of user u: items (u, u+1, -1) with scores (3, 2, 0); records the blocks asked."""

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []

    def candidates(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.blocks.append(users.tolist())
        items = np.stack([users, users + 1, np.full(len(users), -1)], axis=1)
        return items, np.tile(np.array([3.0, 2.0, 0.0], np.float32), (len(users), 1))


def test_lists_are_written_block_by_block_and_equal_the_whole(tmp_path: Path) -> None:
    model = _Model()
    user_ids, item_ids = np.array([10, 20, 30, 40, 50]), np.arange(100, 107)
    path = write_lists(model, 5, user_ids, item_ids, None, tmp_path / "top_row.parquet", 2)  # type: ignore[arg-type]
    assert model.blocks == [[0, 1], [2, 3], [4]]
    lists = TopLists.load(path).lists
    assert list(lists) == [10, 20, 30, 40, 50]
    np.testing.assert_array_equal(lists[30][0], [102, 103])  # the -1 (no candidate) dropped
    np.testing.assert_array_equal(lists[30][1], [3.0, 2.0])
    kept = TopLists.load(write_lists(_Model(), 5, user_ids, item_ids, 1, tmp_path / "k.parquet", 4)).lists  # type: ignore[arg-type]
    assert all(len(t) == 1 for t, _ in kept.values())
    assert not list(tmp_path.glob("*.tmp"))


def test_lists_on_two_threads_are_the_same_bytes_as_on_one(tmp_path: Path) -> None:
    user_ids, item_ids = np.arange(10, 240, 10), np.arange(100, 130)
    one = write_lists(_Model(), 20, user_ids, item_ids, None, tmp_path / "one.parquet", 3)  # type: ignore[arg-type]
    folded = _Model()
    extra = [(folded, np.array([7, 8, 9, 11]))]
    two = write_lists(_Model(), 20, user_ids, item_ids, None, tmp_path / "two.parquet", 3,  # type: ignore[arg-type]
                      extra, threads=2)  # type: ignore[arg-type]
    lists_one, lists_two = TopLists.load(one).lists, TopLists.load(two).lists
    assert list(lists_two) == [*user_ids[:20].tolist(), 7, 8, 9, 11]  # the trained users, then the folded-in, in order
    for pid, (titles, scores) in lists_one.items():
        np.testing.assert_array_equal(lists_two[pid][0], titles)
        np.testing.assert_array_equal(lists_two[pid][1], scores)
    assert sorted(map(tuple, folded.blocks)) == [(0, 1, 2), (3,)]
