"""The ranker artifact (``RankerArtifact`` and its ``MLP``): what the nightly job and serving load and call.

Two kinds share one interface (``predict(X) -> P(play)``, X of shape (n, n_features) with the
columns named by ``feature_names``):

- ``mlp``: a PyTorch multilayer perceptron on standardized features (the champion by default);
- ``gbdt``: scikit-learn's HistGradientBoostingClassifier (the challenger by default); the nightly's
  page builder scores it with its trees compiled to native code (``compile_trees``).

Training lives in ``training/ranker.py``; this module only defines, saves and loads them, so that
``ranking`` and serving never import training code. ``pathways/artifacts/registry.py`` loads a
registered one (``load_registered(uri, "ranker")``).
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pathways.artifacts.compiled_trees import CompiledTrees
from pathways.artifacts.folder import read_meta

META = "ranker.json"
WEIGHTS = "ranker.pt"
SKLEARN = "ranker.pkl"


class MLP(nn.Module):
    """Standardized features -> hidden -> hidden -> logit."""

    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x)
        return logits.squeeze(-1)


def _tiles_forward(x: torch.Tensor, tile: int, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """sigmoid(MLP(x)) row by row, computed ``tile`` rows at a time (the last tile padded with zero
    rows): ``MLP.forward``'s ops (linear, ReLU between layers, the last layer's column squeezed) on
    products of one shape only, whatever the number of rows."""
    n = x.shape[0]
    parts: list[torch.Tensor] = []
    for a in range(0, n, tile):
        h = x[a:a + tile]
        if h.shape[0] < tile:  # only the last tile is padded (not a copy of the whole input)
            h = torch.cat([h, torch.zeros((tile - h.shape[0], x.shape[1]), dtype=x.dtype)])
        for j in range(len(weights)):
            h = torch.nn.functional.linear(h, weights[j], biases[j])
            if j < len(weights) - 1:
                h = torch.relu(h)
        parts.append(torch.sigmoid(h.squeeze(-1)))
    return torch.cat(parts)[:n]


@cache
def _scripted_tiles() -> Any:
    """``_tiles_forward`` compiled by TorchScript (once per process): the loop over the tiles runs in
    C++ without the GIL, so two page-builder threads score at once (a Python loop holds the GIL
    between each tile's small matrix products: 0.75x on two threads, measured with segments)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still in torch 2.13
        return torch.jit.script(_tiles_forward)


MLP_TILE = 512  # rows per product of the MLP: see ``RankerArtifact.predict_segments``


def _standardized(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(X - mean) / std`` (float32, broadcast), non-finite values as 0: a new array, in X's layout."""
    X = X - mean
    X /= std  # in place: one temporary fewer, the same float32 operations
    np.copyto(X, 0.0, where=~np.isfinite(X))  # nan_to_num(nan=posinf=neginf=0) in one pass instead of three
    return X


@dataclass
class RankerArtifact:
    """A trained ranker: its kind, feature names, normalization and learned model."""

    kind: Literal["mlp", "gbdt"]
    feature_names: list[str]
    mean: np.ndarray  # (n_features,)
    std: np.ndarray  # (n_features,)
    model: Any  # MLP for "mlp", a fitted sklearn estimator for "gbdt"
    hidden: int = 0
    metrics: dict[str, float] | None = None
    compiled: CompiledTrees | None = field(default=None, repr=False, compare=False)  # see ``compile_trees``

    def compile_trees(self, cache_dir: Path) -> bool:
        """Score a gbdt with its trees compiled to native code (``CompiledTrees``, built once into
        ``cache_dir``) instead of scikit-learn's walk; True when it does from now on. An mlp, or a
        machine without a C compiler, keeps its own path."""
        if self.kind == "gbdt" and self.compiled is None:
            self.compiled = CompiledTrees.load_or_build(self.model, cache_dir)
        return self.compiled is not None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(play) for each row of ``X`` (n, n_features) -> (n,) float32."""
        return self.predict_segments(X, np.array([0, len(X)]))

    def standardize(self, columns: np.ndarray, features: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The feature columns ``features`` (k of them; all by default) as the model sees them:
        ``columns`` (k, n) float32, one column a line -> (k, n) float32, ``(x - mean) / std`` with
        non-finite values as 0, what ``predict_segments`` does to each row. Element-wise, so a caller
        may standardize each title's or profile's values once and gather its pairs from them
        (``predict_segments(..., standardized=True)``); in lines of n, numpy's loops run at memory
        speed (over (n, features) rows, the broadcast's inner loop is one row: ~3x slower)."""
        return _standardized(np.asarray(columns, np.float32), self.mean[features][:, None], self.std[features][:, None])

    def predict_segments(self, X: np.ndarray, bounds: np.ndarray, standardized: bool = False) -> np.ndarray:
        """``predict`` of each segment ``X[bounds[i]:bounds[i + 1]]`` alone, concatenated -> (n,) float32.
        The standardization is element-wise (one pass for all rows; skipped when ``standardized``:
        ``X`` went through ``standardize`` already). A neural network's float32 output can change in
        the last bit with the shape of its matrix products (a lone row, M = 1, takes another kernel
        than a batch), so the MLP runs on tiles of exactly ``MLP_TILE`` rows, the last padded: within
        one shape, a row's bits do not depend on its place or its neighbours (measured with torch's
        CPU kernels on 1 and 2 threads; ``tests/pipelines/test_block_parity.py`` checks it), so a block
        of profiles scores each as if it were alone, in one product a tile instead of one a profile
        (a 100k block of 184k pairs in ~1,000 segments: ~96 -> ~60 ms). Trees score every row on its
        own. ``bounds`` (rising from 0 to n) is checked; the rows' scores do not depend on it."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"expected (n, {len(self.feature_names)}) features, got {X.shape}")
        bounds = np.asarray(bounds)
        if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != len(X) or (np.diff(bounds) < 0).any():
            raise ValueError(f"segment bounds must rise from 0 to {len(X)}, got {bounds[:3]}...{bounds[-2:]}")
        if not len(X):
            return np.zeros(0, np.float32)
        if not standardized:
            X = _standardized(X, self.mean, self.std)
        if self.kind == "mlp":
            layers = [m for m in self.model.net if isinstance(m, nn.Linear)]
            with torch.inference_mode():  # ~2x less overhead per call than no_grad
                out: np.ndarray = _scripted_tiles()(
                    torch.from_numpy(X), MLP_TILE, [m.weight for m in layers], [m.bias for m in layers]
                ).numpy().astype(np.float32)
            return out
        if self.compiled is not None:
            return self.compiled.predict_proba1(X).astype(np.float32)
        proba: np.ndarray = self.model.predict_proba(X)[:, 1].astype(np.float32)
        return proba

    def save(self, path: Path | str) -> Path:
        """Write the folder ``path``: ``ranker.json`` plus ``ranker.pt`` (mlp) or ``ranker.pkl`` (gbdt)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "feature_names": self.feature_names,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "hidden": self.hidden,
            "metrics": self.metrics or {},
        }
        (path / META).write_text(json.dumps(meta, indent=2))
        if self.kind == "mlp":
            torch.save(self.model.state_dict(), path / WEIGHTS)
        else:
            with open(path / SKLEARN, "wb") as fh:
                pickle.dump(self.model, fh)
        return path

    @classmethod
    def load(cls, path: Path | str) -> RankerArtifact:
        """The ranker saved in the folder ``path``; FileNotFoundError when there is none."""
        path = Path(path)
        meta = read_meta(path, META, "ranker artifact")
        n = len(meta["feature_names"])
        if meta["kind"] == "mlp":
            model: Any = MLP(n, int(meta["hidden"]))
            model.load_state_dict(torch.load(path / WEIGHTS, weights_only=True))
            model.eval()
        else:
            with open(path / SKLEARN, "rb") as fh:
                model = pickle.load(fh)  # noqa: S301 - our own artifact
        return cls(
            kind=meta["kind"],
            feature_names=list(meta["feature_names"]),
            mean=np.asarray(meta["mean"], np.float32),
            std=np.asarray(meta["std"], np.float32),
            model=model,
            hidden=int(meta["hidden"]),
            metrics=meta.get("metrics"),
        )
