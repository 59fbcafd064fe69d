"""Learning to rank over per-user candidate lists: a small MLP with a listwise or pairwise loss.

Data are padded lists: ``features`` (n_lists, n_cands, n_features), ``mask`` (n_lists, n_cands)
true where a candidate exists, ``labels`` (n_lists, n_cands) in {0, 1}. Losses:

- ``listwise``: softmax cross-entropy of each list against its labels normalised to sum 1
  (ListNet with binary relevance; the sampled-softmax view of "which candidate was watched").
- ``pairwise``: RankNet/BPR, mean of ``-log sigmoid(s_pos - s_neg)`` over ``pairs_per_list``
  sampled (positive, negative) pairs per list.

Features are standardised with statistics from the fitting lists (NaN -> 0 after scaling). Early
stopping holds out ``valid_fraction`` of the lists and keeps the epoch with the best NDCG@``k``.
``PointwiseGBDT`` (sklearn HistGradientBoosting on the same rows) is the pointwise comparison.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits
from torch import nn

from pathways.models_config import RankerConfig
from training.evaluation.metrics import ndcg_at_k
from training.models.base import configured
from training.models.torch_utils import torch_threads

PREDICT_ROWS = 16_384  # candidates scored per call of the ListRanker's network (see ``ListRanker.predict``)


def _check(features: np.ndarray, mask: np.ndarray, labels: np.ndarray | None) -> None:
    if features.ndim != 3:
        raise ValueError(f"features must be (n_lists, n_cands, n_features), got shape {features.shape}")
    if mask.shape != features.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match features {features.shape[:2]}")
    if labels is not None and labels.shape != mask.shape:
        raise ValueError(f"labels shape {labels.shape} does not match mask {mask.shape}")


def list_ndcg(scores: np.ndarray, labels: np.ndarray, mask: np.ndarray, k: int) -> float:
    """Mean NDCG@k (binary) of lists ranked by ``scores``; lists without positives are skipped."""
    scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(labels * mask, order, axis=1)
    n_pos = (labels * mask).sum(1).astype(np.int64)
    keep = n_pos > 0
    return ndcg_at_k(hits[keep], n_pos[keep], k) if keep.any() else 0.0


class ListRanker:
    """MLP scorer of (user, candidate) feature rows trained with a list-aware loss."""

    def __init__(self, config: RankerConfig | None = None, *, seed: int = 0, **overrides: object) -> None:
        self.config = configured(RankerConfig, config, overrides)
        self.seed = seed

    def fit(self, features: np.ndarray, mask: np.ndarray, labels: np.ndarray) -> ListRanker:
        _check(features, mask, labels)
        cfg = self.config
        start = time.perf_counter()
        keep = (labels * mask).sum(1) > 0  # lists without a positive carry no ranking signal
        if keep.sum() < 2:
            raise ValueError("need at least 2 candidate lists with a positive label to fit the ranker")
        features, mask, labels = features[keep], mask[keep], labels[keep].astype(np.float32)
        rows = features[mask]
        self.mean_ = np.nanmean(rows, axis=0).astype(np.float32)
        std = np.nanstd(rows, axis=0)
        self.std_ = np.where(np.nan_to_num(std) < 1e-6, 1.0, np.nan_to_num(std)).astype(np.float32)
        self.mean_ = np.nan_to_num(self.mean_)
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        order = rng.permutation(len(features))
        n_valid = max(1, int(round(cfg.valid_fraction * len(features))))
        valid, fit = order[:n_valid], order[n_valid:]
        x = torch.from_numpy(self._scale(features))
        m, y = torch.from_numpy(mask), torch.from_numpy(labels)
        layers: list[nn.Module] = []
        width = features.shape[2]
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = h
        self.net_ = nn.Sequential(*layers, nn.Linear(width, 1))
        opt = torch.optim.Adam(self.net_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, stale = -1.0, 0
        best_state: dict[str, torch.Tensor] | None = None
        self.history_: list[float] = []
        with torch_threads(cfg.threads):
            for _ in range(cfg.max_epochs):
                self.net_.train()
                n_steps = max(-(-len(fit) // cfg.batch_lists), cfg.min_steps_per_epoch)
                stream = np.concatenate([rng.permutation(fit) for _ in range(-(-n_steps * cfg.batch_lists // len(fit)))])
                for step in range(n_steps):
                    b = torch.from_numpy(stream[step * cfg.batch_lists : (step + 1) * cfg.batch_lists])
                    scores = self.net_(x[b]).squeeze(-1)
                    loss = self._loss(scores, y[b], m[b], rng)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                self.net_.eval()
                with torch.no_grad():
                    vs = self.net_(x[valid]).squeeze(-1).numpy()
                ndcg = list_ndcg(vs, labels[valid], mask[valid], cfg.k)
                self.history_.append(ndcg)
                if ndcg > best:
                    best, stale = ndcg, 0
                    best_state = {k: v.clone() for k, v in self.net_.state_dict().items()}
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
        assert best_state is not None  # the first epoch always improves on -1
        self.net_.load_state_dict(best_state)
        self.net_.eval()
        self.valid_ndcg_ = best
        self.train_seconds_ = time.perf_counter() - start
        return self

    def _loss(self, scores: torch.Tensor, y: torch.Tensor, m: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        scores = scores.masked_fill(~m, float("-inf"))
        if self.config.loss == "listwise":
            target = y * m / (y * m).sum(1, keepdim=True)
            logp = torch.log_softmax(scores, dim=1).masked_fill(~m, 0.0)
            return -(target * logp).sum(1).mean()
        pos_w, neg_w = (y * m), ((1 - y) * m)  # sample pairs per list, proportional to membership
        n = self.config.pairs_per_list
        pos = torch.multinomial(pos_w, n, replacement=True)
        neg = torch.multinomial(neg_w + 1e-12 * (neg_w.sum(1, keepdim=True) == 0), n, replacement=True)
        diff = scores.gather(1, pos) - scores.gather(1, neg)
        return -F.logsigmoid(diff).mean()

    def _scale(self, features: np.ndarray) -> np.ndarray:
        x = features - self.mean_  # a new array (in the inputs' precision): the steps after work in place
        x /= self.std_
        return np.nan_to_num(x, copy=False).astype(np.float32, copy=False)

    def predict(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(n_lists, n_cands) float32 scores; -inf where ``mask`` is false. The candidates go through
        the network ``PREDICT_ROWS`` at a time, so each layer's output stays in cache: a block of
        512 lists of 500 took 236 ms in one call and takes 86 ms so, the same bits (measured: the
        kernels' bits do not change with the number of rows; skipping the padded candidates would
        change a few in the last bit, ragged chunks)."""
        _check(features, mask, None)
        flat = features.reshape(-1, features.shape[-1])
        scores = np.empty(len(flat), np.float32)
        with torch.inference_mode(), torch_threads(self.config.threads):
            for lo in range(0, len(flat), PREDICT_ROWS):
                x = torch.from_numpy(self._scale(flat[lo:lo + PREDICT_ROWS]))
                scores[lo:lo + PREDICT_ROWS] = self.net_(x).squeeze(-1).numpy()
        return np.where(mask, scores.reshape(mask.shape), np.float32(-np.inf))


class PointwiseGBDT:
    """Pointwise baseline: a gradient-boosted classifier of label given the candidate's features."""

    def __init__(self, config: RankerConfig | None = None, *, seed: int = 0, **overrides: object) -> None:
        """Uses ``gbdt_max_iter`` and ``gbdt_learning_rate`` of ``config``."""
        self.config = configured(RankerConfig, config, overrides)
        self.seed = seed

    def fit(self, features: np.ndarray, mask: np.ndarray, labels: np.ndarray) -> PointwiseGBDT:
        _check(features, mask, labels)
        start = time.perf_counter()
        with threadpool_limits(1, "openmp"):
            self.model_ = HistGradientBoostingClassifier(
                max_iter=self.config.gbdt_max_iter, learning_rate=self.config.gbdt_learning_rate,
                early_stopping=True, random_state=self.seed,
            ).fit(features[mask], labels[mask].astype(int))
        self.train_seconds_ = time.perf_counter() - start
        return self

    def predict(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        _check(features, mask, None)
        out = np.full(mask.shape, -np.inf, dtype=np.float32)
        with threadpool_limits(1, "openmp"):
            out[mask] = self.model_.predict_proba(features[mask])[:, 1]
        return out
