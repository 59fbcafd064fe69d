"""Small PyTorch helpers shared by the neural models: thread limits, exclusion masks, top-k."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from training.recommender import top_k_excluding  # noqa: F401 - re-exported for the models


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, restoring the previous count after."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class EarlyStopping:
    """Keeps the best weights of ``module`` by a validation score; ``update`` says when to stop.

    ``history`` lists (epoch, score) of every evaluation; ``best_epoch`` is None until one ran.
    """

    def __init__(self, module: torch.nn.Module, patience: int) -> None:
        self.module, self.patience = module, patience
        self.best_score, self.best_epoch, self.stale = -np.inf, None, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[tuple[int, float]] = []

    def update(self, epoch: int, score: float) -> bool:
        """Record ``score`` after ``epoch``; True when ``patience`` evaluations passed without gain."""
        self.history.append((epoch, score))
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self) -> None:
        """Load the best weights back (no-op when nothing was evaluated)."""
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
