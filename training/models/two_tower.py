"""Two-tower retrieval: user tower over the recent history, item tower over id + side features.

User tower: mean of the last ``history`` item embeddings and of the last ``recent`` ones (plus an
optional projection of user features), through a small MLP. Item tower: id embedding plus a
projection of optional item features (e.g. genre multi-hot), through an MLP. Both outputs are
L2-normalised; the score is their inner product / ``temperature``.

Training mimics serving: each example is (user, position t) and the user's history is the items
before t, so the model learns to predict what comes next from what came before. The loss is an
in-batch sampled softmax with the logQ correction (subtract log of each item's sampling
probability, here its frequency as a target) and same-item collisions masked.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathways.models_config import TwoTowerConfig
from training.models.torch_utils import EarlyStoppedModel, torch_threads
from training.recommender import Interactions


class TwoTowerNet(nn.Module):
    def __init__(self, n_items: int, cfg: TwoTowerConfig, n_item_feats: int, n_user_feats: int) -> None:
        super().__init__()
        d = cfg.dim
        self.history_emb = nn.EmbeddingBag(n_items + 1, d, mode="mean", padding_idx=0)
        self.recent_emb = nn.EmbeddingBag(n_items + 1, d, mode="mean", padding_idx=0)
        self.item_emb = nn.Embedding(n_items, d)
        self.item_feat = nn.Linear(n_item_feats, d, bias=False) if n_item_feats else None
        self.user_feat = nn.Linear(n_user_feats, d, bias=False) if n_user_feats else None
        self.user_mlp = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.item_mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        for emb in (self.history_emb, self.recent_emb, self.item_emb):
            nn.init.normal_(emb.weight, std=0.1)

    def users(self, hist: torch.Tensor, recent: torch.Tensor, feats: torch.Tensor | None) -> torch.Tensor:
        """hist (B, H), recent (B, R) item index + 1 (0 = pad) -> (B, dim) unit vectors."""
        x = torch.cat([self.history_emb(hist), self.recent_emb(recent)], dim=1)
        out = self.user_mlp(x)
        if self.user_feat is not None and feats is not None:
            out = out + self.user_feat(feats)
        return F.normalize(out, dim=-1)

    def items(self, ids: torch.Tensor, feats: torch.Tensor | None) -> torch.Tensor:
        """ids (B,) -> (B, dim) unit vectors."""
        x = self.item_emb(ids)
        if self.item_feat is not None and feats is not None:
            x = x + self.item_feat(feats)
        return F.normalize(self.item_mlp(x), dim=-1)


def _prefix_matrix(seq: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """(len(ends), width) of item index + 1 for seq[end - width : end], left-padded with 0."""
    out = np.zeros((len(ends), width), dtype=np.int64)
    padded = np.concatenate([np.full(width, -1, dtype=np.int64), seq])
    idx = ends[:, None] + np.arange(width)[None, :]  # offset by the width of left padding
    out[:] = padded[idx] + 1
    return out


class TwoTower(EarlyStoppedModel):
    """Two-tower retrieval model implementing ``Recommender`` and ``FactorModel`` (fit contract:
    ``EarlyStoppedModel``); retrieval through ``pathways.artifacts.factor_index.FactorIndex``.

    ``fit(..., item_features=(n_items, f), user_features=(n_users, g))``: optional float side information.
    """

    name = "two_tower"
    section = TwoTowerConfig
    reads_item_features = True
    config: TwoTowerConfig
    net_: TwoTowerNet

    def fit(self, train: Interactions, *, valid: Interactions | None = None, item_features: np.ndarray | None = None,
            epochs: int | None = None, user_features: np.ndarray | None = None) -> Self:
        if user_features is not None and user_features.shape[0] != train.n_users:
            raise ValueError(f"user_features has {user_features.shape[0]} rows, expected n_users={train.n_users}")
        self.user_features_ = None if user_features is None else torch.as_tensor(user_features, dtype=torch.float32)
        return super().fit(train, valid=valid, item_features=item_features, epochs=epochs)

    def _prepare(self, train: Interactions, item_features: np.ndarray | None) -> None:
        if item_features is not None and item_features.shape[0] != train.n_items:
            raise ValueError(f"item_features has {item_features.shape[0]} rows, expected n_items={train.n_items}")
        self.item_features_ = None if item_features is None else torch.as_tensor(item_features, dtype=torch.float32)

    def _examples(self, sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (user, history-end t, target) with t >= 1 as parallel arrays."""
        users, ends, targets = [], [], []
        for u, seq in enumerate(sequences):
            if len(seq) < 2:
                continue
            t = np.arange(1, len(seq))
            users.append(np.full(len(t), u))
            ends.append(t)
            targets.append(seq[1:])
        return np.concatenate(users), np.concatenate(ends), np.concatenate(targets)

    def _histories(self, users: np.ndarray, ends: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        hist = np.zeros((len(users), cfg.history), dtype=np.int64)
        recent = np.zeros((len(users), cfg.recent), dtype=np.int64)
        order = np.argsort(users, kind="stable")
        bounds = np.searchsorted(users[order], np.arange(len(self.sequences_) + 1))
        for u in np.flatnonzero(np.diff(bounds)):
            rows = order[bounds[u] : bounds[u + 1]]
            hist[rows] = _prefix_matrix(self.sequences_[u], ends[rows], cfg.history)
            recent[rows] = hist[rows, -cfg.recent :] if cfg.recent <= cfg.history else _prefix_matrix(
                self.sequences_[u], ends[rows], cfg.recent
            )
        return torch.from_numpy(hist), torch.from_numpy(recent)

    def _train(self, train: Interactions, valid: Interactions | None, max_epochs: int) -> None:
        cfg = self.config
        rng = self._start(train)
        n_if = 0 if self.item_features_ is None else self.item_features_.shape[1]
        n_uf = 0 if self.user_features_ is None else self.user_features_.shape[1]
        self.net_ = TwoTowerNet(train.n_items, cfg, n_if, n_uf)
        opt = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        users, ends, targets = self._examples(self.sequences_)
        hist_all, recent_all = self._histories(users, ends)
        freq = np.bincount(targets, minlength=train.n_items).astype(np.float64)
        log_q = torch.from_numpy(np.log(np.maximum(freq, 1.0) / freq.sum()).astype(np.float32))

        def one_epoch() -> None:
            order = rng.permutation(len(users))
            for s in range(0, len(order), cfg.batch_size):
                b = order[s : s + cfg.batch_size]
                tgt = torch.from_numpy(targets[b])
                uf = None if self.user_features_ is None else self.user_features_[users[b]]
                itf = None if self.item_features_ is None else self.item_features_[tgt]
                u = self.net_.users(hist_all[b], recent_all[b], uf)
                v = self.net_.items(tgt, itf)
                logits = u @ v.T / cfg.temperature - log_q[tgt][None, :]
                same = (tgt[:, None] == tgt[None, :]) & ~torch.eye(len(b), dtype=torch.bool)
                loss = F.cross_entropy(logits.masked_fill(same, float("-inf")), torch.arange(len(b)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        self._run_epochs(train, valid, max_epochs, one_epoch)

    def set_history(self, data: Interactions) -> Self:
        """Embed users from ``data``'s sequences from now on, without retraining (same catalog)."""
        if data.n_items != self.n_items_:
            raise ValueError(f"data has n_items={data.n_items}, the model was fit with {self.n_items_}")
        self.sequences_ = data.sequences()
        return self

    def fold_in(self, data: Interactions) -> Self:
        """``EarlyStoppedModel.fold_in``; a model fit with user features cannot know new users' ones."""
        if self.user_features_ is not None:
            raise ValueError("a two-tower fit with user_features cannot fold in users without them")
        out = super().fold_in(data)
        if "_item_vectors" in vars(self):  # the same network: the same item vectors (a copy drops them)
            out._item_vectors = self._item_vectors
        return out

    @property
    def _root_temperature(self) -> np.float32:
        """sqrt(temperature) as float32: a float64 scalar would make the vectors, and the catalog-wide
        product of ``score``, float64 (twice the time of the top row's two-tower scoring, measured)"""
        return np.float32(np.sqrt(self.config.temperature))

    def user_embeddings(self, users: np.ndarray) -> np.ndarray:
        """(len(users), dim) float32 unit vectors from each user's full fit-time history."""
        users = np.asarray(users, dtype=np.int64)
        ends = np.array([len(self.sequences_[u]) for u in users], dtype=np.int64)
        hist, recent = self._histories(users, ends)
        uf = None if self.user_features_ is None else self.user_features_[users]
        with torch.no_grad(), torch_threads(self.config.threads):
            return self.net_.users(hist, recent, uf).numpy() / self._root_temperature

    def item_embeddings(self) -> np.ndarray:
        """(n_items, dim) float32; inner products with ``user_embeddings`` are the logits. Kept until
        the network's weights change (their tensors' version counters: an optimizer step, a new
        fit), so scoring block after block of users runs the item tower once (it was 4% of a
        top-row list's time), and the copies ``fold_in`` makes share it. Read-only."""
        key = (id(self.net_), tuple(p._version for p in self.net_.parameters()))
        cached = self.__dict__.get("_item_vectors")
        if cached is not None and cached[0] == key:
            vecs: np.ndarray = cached[1]
            return vecs
        with torch.no_grad(), torch_threads(self.config.threads):
            vecs = self.net_.items(torch.arange(self.n_items_), self.item_features_).numpy()
        vecs = vecs / self._root_temperature
        vecs.flags.writeable = False
        self._item_vectors = (key, vecs)
        return vecs

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_item_vectors", None)  # derived: recomputed after loading
        return state

    def retrieval_vectors(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``user_embeddings(users)``, ``item_embeddings()``), exported for faiss retrieval."""
        return self.user_embeddings(users), self.item_embeddings()

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32 logits (user · item / temperature)."""
        return self.user_embeddings(users) @ self.item_embeddings().T
