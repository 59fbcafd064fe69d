"""SASRec: causal self-attention over a member's recent history, predicting the next title.

Items are embedded (index 0 is padding), plus a learned embedding of each position's distance
from the end of the sequence, so the most recent title always sits at position 0 — as in the
original right-aligned SASRec. Two pre-norm blocks of causal attention (no dropout on attention
weights: on CPU it made backward ~15x slower) and a feed-forward layer; the output is tied to the
item embeddings. Training predicts every next item of every window with a full softmax over the
catalog (bf16 autocast), or a shared-negatives sampled softmax when the catalog is larger than
``full_softmax_max_items``. Windows of similar length are batched together under a token budget.

``score(users)`` = logits at the last position of the user's full (fit-time) sequence.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathways.models_config import SASRecConfig
from training.models.torch_utils import EarlyStoppedModel, torch_threads, use_bf16
from training.recommender import Interactions


class _Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, dim // self.n_heads).unbind(2)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, length, dim)))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRecNet(nn.Module):
    """Sequences (B, L) of item index + 1 (0 = pad, right-padded) -> hidden states (B, L, dim)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.blocks = nn.ModuleList(_Block(cfg.dim, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.max_len = cfg.max_len
        nn.init.normal_(self.item_emb.weight, std=cfg.dim**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(seq.shape[1])
        pos = (lengths[:, None] - 1 - steps[None, :]).clamp(0, self.max_len - 1)
        x = self.item_emb(seq) * math.sqrt(self.item_emb.embedding_dim) + self.pos_emb(pos)
        x = self.drop(x) * (seq > 0).unsqueeze(-1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(T, dim) -> (T, n_items) logits over the real items."""
        return hidden @ self.item_emb.weight[1:].T


def _windows(sequences: list[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Cut each sequence into windows of <= max_len + 1 items, from the end backwards."""
    out = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            out.append(seq[max(0, end - max_len - 1) : end])
            end -= max_len
    return out


def _pad(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    seq = np.zeros((len(rows), max(int(lengths.max()), 1)), dtype=np.int64)
    for i, r in enumerate(rows):
        seq[i, : len(r)] = r + 1
    return torch.from_numpy(seq), torch.from_numpy(lengths)


class SASRec(EarlyStoppedModel):
    """Next-item self-attention model implementing ``Recommender`` (fit contract: ``EarlyStoppedModel``)."""

    name = "sasrec"
    section = SASRecConfig
    config: SASRecConfig
    net_: SASRecNet

    def _train(self, train: Interactions, valid: Interactions | None, max_epochs: int) -> None:
        cfg = self.config
        rng = self._start(train)
        self.popularity_ = np.bincount(train.items, minlength=train.n_items).astype(np.float32)
        self.sample_p_ = np.sqrt(self.popularity_ + 1.0, dtype=np.float64)  # negatives ~ sqrt(popularity)
        self.sample_p_ /= self.sample_p_.sum()
        self.sample_log_q_ = torch.from_numpy(np.log(self.sample_p_).astype(np.float32))
        self.net_ = SASRecNet(train.n_items, cfg)
        opt = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        windows = sorted(_windows(self.sequences_, cfg.max_len), key=len)
        batches: list[list[np.ndarray]] = []
        current: list[np.ndarray] = []
        for w in windows:  # sorted by length: the last window of a batch is its longest
            if current and (len(current) + 1) * (len(w) - 1) > cfg.batch_tokens:
                batches.append(current)
                current = []
            current.append(w)
        if current:
            batches.append(current)
        full = train.n_items <= cfg.full_softmax_max_items
        self.bf16_ = use_bf16(cfg.bf16)  # "auto": only where the CPU computes bf16 natively

        def one_epoch() -> None:
            for b in rng.permutation(len(batches)):
                seq, lengths = _pad(batches[b])
                inputs, targets = seq[:, :-1], seq[:, 1:]
                mask = targets > 0
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16_):
                    hidden = self.net_(inputs, lengths - 1)[mask]
                    loss = self._loss(hidden, targets[mask] - 1, full, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        self._run_epochs(train, valid, max_epochs, one_epoch)

    def _loss(self, hidden: torch.Tensor, targets: torch.Tensor, full: bool, rng: np.random.Generator) -> torch.Tensor:
        """Cross-entropy of the next item: hidden (T, dim), targets (T,) in [0, n_items).

        Sampled: ``n_negatives`` shared items drawn ~ sqrt(popularity); every logit is corrected
        by subtracting log q (the sampling probability), accidental hits are masked."""
        if full:
            return F.cross_entropy(self.net_.item_logits(hidden).float(), targets)
        log_q = self.sample_log_q_
        negatives = torch.from_numpy(rng.choice(self.n_items_, self.config.n_negatives, p=self.sample_p_))
        weights = self.net_.item_emb.weight[1:]
        pos = (hidden * weights[targets]).sum(-1, keepdim=True) - log_q[targets][:, None]
        neg = hidden @ weights[negatives].T - log_q[negatives][None, :]  # logQ correction
        neg = neg.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))  # accidental hits
        logits = torch.cat([pos, neg], dim=1).float()
        return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))

    def set_history(self, data: Interactions) -> Self:
        """Score from ``data``'s sequences from now on, without retraining (same catalog)."""
        if data.n_items != self.n_items_:
            raise ValueError(f"data has n_items={data.n_items}, the model was fit with {self.n_items_}")
        self.sequences_ = data.sequences()
        self.popularity_ = np.bincount(data.items, minlength=data.n_items).astype(np.float32)
        return self

    # ---- inference ------------------------------------------------------------------------
    def user_states(self, users: np.ndarray) -> np.ndarray:
        """(len(users), dim) float32 hidden state at each user's last position (zeros if no history)."""
        out = np.zeros((len(users), self.config.dim), dtype=np.float32)
        rows = [self.sequences_[u][-self.config.max_len :] for u in users]
        has = np.array([len(r) > 0 for r in rows], dtype=bool)
        idx = np.flatnonzero(has)
        with torch.no_grad(), torch_threads(self.config.threads):
            for s in range(0, len(idx), 256):
                chunk = idx[s : s + 256]
                seq, lengths = _pad([rows[i] for i in chunk])
                hidden = self.net_(seq, lengths)
                out[chunk] = hidden[torch.arange(len(chunk)), lengths - 1].numpy()
        return out

    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32 output item embeddings: logits = ``user_states`` . these."""
        with torch.no_grad():
            return self.net_.item_emb.weight[1:].detach().numpy().astype(np.float32, copy=True)

    def retrieval_vectors(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors (len(users), dim), item vectors (n_items, dim)) whose inner products are the
        next-item logits of users with a history (exported for faiss retrieval by the nightly job)."""
        return self.user_states(np.asarray(users, np.int64)), self.item_vectors()

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) next-item logits; users without history get log-popularity."""
        users = np.asarray(users, dtype=np.int64)
        states = self.user_states(users)
        with torch.no_grad():
            scores = (torch.from_numpy(states) @ self.net_.item_emb.weight[1:].T).numpy()
        empty = np.array([len(self.sequences_[u]) == 0 for u in users], dtype=bool)
        scores[empty] = np.log1p(self.popularity_)
        return scores.astype(np.float32, copy=False)

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        if not hasattr(self, "net_"):
            raise ValueError("SASRec must be fit before save")
        torch.save(
            {
                "config": self.config.model_dump(),
                "seed": self.seed,
                "name": self.name,
                "state": self.net_.state_dict(),
                "n_items": self.n_items_,
                "sequences": self.sequences_,
                "popularity": self.popularity_,
                "best_epochs": self.best_epochs_,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> Self:
        blob = torch.load(path, weights_only=False)
        model = cls(SASRecConfig(**blob["config"]), seed=blob["seed"], name=blob["name"])
        model.n_items_, model.sequences_ = blob["n_items"], blob["sequences"]
        model.popularity_, model.best_epochs_ = blob["popularity"], blob["best_epochs"]
        model.net_ = SASRecNet(model.n_items_, model.config)
        model.net_.load_state_dict(blob["state"])
        model.net_.eval()
        return model
