"""What the neural models share: thread limits, early stopping, and the fit contract around them."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import torch

from training.evaluation.metrics import ndcg_recall
from training.evaluation.splits import leave_last_k
from training.models.base import ConfiguredModel
from training.recommender import Interactions, same_catalog, top_k_excluding


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


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's own check: AVX512 or AMX), where bf16
    autocast pays; on an AVX2-only CPU it is emulated, several times slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN: no fast bf16 either
        return False


def use_bf16(setting: bool | str) -> bool:
    """A model's ``bf16`` setting resolved: True / False as set, "auto" as ``native_bf16``."""
    if setting == "auto":
        return native_bf16()
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"bf16 must be true, false or 'auto', got {setting!r}")


class EarlyStopping:
    """Keeps the best weights of ``module`` by a validation score; ``update`` says when to stop.

    ``history`` lists (epoch, score) of every evaluation; ``best_epoch`` is None until one ran.
    """

    def __init__(self, module: torch.nn.Module, patience: int) -> None:
        self.module, self.patience = module, patience
        self.best_score, self.stale = -np.inf, 0
        self.best_epoch: int | None = None
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


class ValidationNDCG:
    """NDCG@20 on a validation split, the early-stopping signal of the neural models."""

    def __init__(self, train: Interactions, valid: Interactions, k: int = 20) -> None:
        self.exclude, self.truth, self.k = train.matrix(), valid.matrix(binary=True).tocsr(), k
        self.users = np.unique(valid.users)

    def __call__(self, model: Any) -> float:
        recs = top_k_excluding(model.score(self.users), self.users, self.exclude, self.k)
        return ndcg_recall(recs, self.users, self.truth, self.k)[f"ndcg@{self.k}"]


class EarlyStoppedModel(ConfiguredModel):
    """A neural model trained for a number of epochs chosen on validation.

    ``fit(train, valid=None, epochs=None)``: with ``epochs``, exactly that many; else early-stop on
    ``valid``, or on a leave-last-``valid_k`` split carved from ``train`` (then, with ``refit``,
    retrain on all of ``train`` for the best epoch count; without, keep the weights and read the
    full histories). ``best_epochs_`` and ``history_`` record the search; ``set_history(data)``
    makes the model score from other histories of the same catalog without retraining.
    Subclasses implement ``_prepare(train, item_features)``, ``_train(train, valid, max_epochs)``
    and ``set_history``.
    """

    reads_item_features = False  # whether ``fit(item_features=...)`` changes the model (``training.shared_fit``)
    net_: torch.nn.Module
    n_items_: int
    sequences_: list[np.ndarray]
    best_epochs_: int
    history_: list[tuple[int, float]]

    def fit(self, train: Interactions, *, valid: Interactions | None = None,
            item_features: np.ndarray | None = None, epochs: int | None = None) -> Self:
        cfg = self.config
        self._prepare(train, item_features)
        with torch_threads(cfg.threads):
            if epochs is not None:
                self._train(train, None, epochs)
            elif valid is not None:
                self._train(train, valid, cfg.max_epochs)
            else:
                inner, held = leave_last_k(train, cfg.valid_k)
                if len(held) == 0:
                    raise ValueError("no user has enough interactions to carve a validation split")
                self._train(inner, held, cfg.max_epochs)
                if cfg.refit:
                    best, history = self.best_epochs_, self.history_
                    self._train(train, None, best)
                    self.best_epochs_, self.history_ = best, history
                else:
                    self.set_history(train)  # score from the full histories
        return self

    def _prepare(self, train: Interactions, item_features: np.ndarray | None) -> None:
        pass

    def _start(self, train: Interactions) -> np.random.Generator:
        """Seed torch, read the catalog size and the sequences; the numpy generator of this training."""
        torch.manual_seed(self.seed)
        self.n_items_ = train.n_items
        self.sequences_ = train.sequences()
        return np.random.default_rng(self.seed)

    def _run_epochs(self, train: Interactions, valid: Interactions | None, max_epochs: int,
                    one_epoch: Callable[[], None]) -> None:
        """Call ``one_epoch`` up to ``max_epochs`` times (``self.net_`` in train mode); with ``valid``,
        evaluate every ``eval_every`` epochs, stop after ``patience`` evaluations without gain and
        keep the best weights. Sets ``history_`` and ``best_epochs_``."""
        cfg = self.config
        stopper = EarlyStopping(self.net_, cfg.patience)
        validation = ValidationNDCG(train, valid) if valid is not None else None
        for epoch in range(1, max_epochs + 1):
            self.net_.train()
            one_epoch()
            if validation is None or epoch % cfg.eval_every:
                continue
            if stopper.update(epoch, validation(self)):
                break
        stopper.restore()
        self.history_ = stopper.history
        self.best_epochs_ = stopper.best_epoch or max_epochs
        self.net_.eval()

    def _train(self, train: Interactions, valid: Interactions | None, max_epochs: int) -> None:
        raise NotImplementedError

    def set_history(self, data: Interactions) -> Self:
        raise NotImplementedError

    def fold_in(self, data: Interactions) -> Self:
        """A copy encoding ``data``'s users from their sequences (``FoldIn``): the trained network and
        every other learned state (e.g. SASRec's popularity for empty histories) unchanged."""
        same_catalog(data, self.n_items_)
        out = copy.copy(self)
        out.sequences_ = data.sequences()
        return out
