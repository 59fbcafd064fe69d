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
