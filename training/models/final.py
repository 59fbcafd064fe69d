"""PathwaysFinal: the top row = candidates from several generators, re-ranked by a learned ranker.

Fit, point-in-time:
1. Carve validation from the given train: per user the last ``valid_k`` interactions (``inner`` =
   the rest). Test data are never seen: whoever calls ``fit`` passes train only.
2. Fit every generator on ``inner`` (SASRec and the two-tower early-stop on validation), build each
   user's candidate union and features as of ``inner``, and label a candidate 1 when it is among the
   user's validation items. Fit the ranker (listwise MLP by default) on those lists.
3. Refit the light generators on all of train; SASRec and the two-tower keep their step-2 weights
   and read the full train histories (``retrain_neural=True`` retrains them for the epoch count
   found in step 2 instead).

Two-tower and ALS candidates are retrieved through faiss (exact inner product, ``FaissRetriever``).

``score(users)``: candidates and features from the refit generators, ranker scores on the
candidates and ``NOT_CANDIDATE`` (very low) elsewhere, so ``recommend`` works unchanged.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from training.models.candidate_features import CandidateFeaturizer, top_n_excluding, union_candidates
from training.models.faiss_index import FaissRetriever
from training.models.generators import ALS, EASE, ItemKNN, Popularity
from training.models.holdout import leave_last_k, users_with_holdout
from training.models.ltr import ListRanker, PointwiseGBDT, RankerConfig
from training.models.sasrec import SASRec, SASRecConfig
from training.models.two_tower import TwoTower, TwoTowerConfig
from training.recommender import Interactions, Recommender

NOT_CANDIDATE = -1e9


@dataclass(frozen=True)
class FinalConfig:
    valid_k: int = 5
    per_generator: int = 200  # top-N each generator contributes
    budget: int = 500  # candidates per user after the union
    generators: tuple[str, ...] = ("sasrec", "two_tower", "ease", "item_knn_recent", "als", "popularity")
    ranker: Literal["listwise", "pairwise", "gbdt"] = "listwise"
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    ranker_config: RankerConfig = field(default_factory=RankerConfig)
    retrain_neural: bool = False  # False: reuse the validation-fit SASRec/two-tower on full histories
    user_chunk: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.generators) - set(GENERATORS)
        if unknown:
            raise ValueError(f"FinalConfig.generators has unknown names {sorted(unknown)}; known: {sorted(GENERATORS)}")
        if self.ranker not in ("listwise", "pairwise", "gbdt"):
            raise ValueError(f"FinalConfig.ranker must be 'listwise', 'pairwise' or 'gbdt', got {self.ranker!r}")
        if self.per_generator < 1 or self.budget < 1:
            raise ValueError("FinalConfig.per_generator and budget must be >= 1")


GENERATORS: dict[str, Callable[["FinalConfig"], Recommender]] = {
    "sasrec": lambda c: SASRec(replace(c.sasrec, seed=c.seed)),
    "two_tower": lambda c: TwoTower(replace(c.two_tower, seed=c.seed)),
    "ease": lambda c: EASE(),
    "item_knn": lambda c: ItemKNN(),
    "item_knn_recent": lambda c: ItemKNN(recency_half_life=10.0, name="item_knn_recent"),
    "als": lambda c: ALS(seed=c.seed),
    "popularity": lambda c: Popularity(),
}
EARLY_STOPPED = ("sasrec", "two_tower")


class PathwaysFinal:
    """Candidates -> ranker, behind ``Recommender``. ``fit(train, item_features=None)``."""

    name = "pathways_final"

    def __init__(
        self, config: FinalConfig | None = None, item_features: np.ndarray | None = None, **overrides: object
    ) -> None:
        """``item_features`` (n_items, f) side information (e.g. genre multi-hot) used by ``fit``
        when it is not given one there."""
        self.config = replace(config or FinalConfig(), **overrides)
        self.item_features = item_features

    def _fit_generators(
        self, train: Interactions, valid: Interactions | None, epochs: dict[str, int], item_features: np.ndarray | None
    ) -> dict[str, Recommender]:
        fitted: dict[str, Recommender] = {}
        for name in self.config.generators:
            model = GENERATORS[name](self.config)
            start = time.perf_counter()
            if name in EARLY_STOPPED and valid is None and not self.config.retrain_neural:
                model = self.generators_inner_[name].set_history(train)
            elif name in EARLY_STOPPED:
                extra = {"item_features": item_features} if name == "two_tower" else {}
                model.fit(train, valid=valid, epochs=epochs.get(name), **extra)
            else:
                model.fit(train)
            self.train_seconds_by_part_[f"{name}@{'inner' if valid is not None else 'full'}"] = time.perf_counter() - start
            fitted[name] = model
        return fitted

    def fit(self, train: Interactions, item_features: np.ndarray | None = None) -> "PathwaysFinal":
        cfg = self.config
        start = time.perf_counter()
        item_features = self.item_features if item_features is None else item_features
        self.train_seconds_by_part_: dict[str, float] = {}
        inner, valid = leave_last_k(train, cfg.valid_k)
        if len(valid) == 0:
            raise ValueError(f"no user has more than {cfg.valid_k} interactions: cannot carve validation")
        generators = self._fit_generators(inner, valid, {}, item_features)
        self.generators_inner_ = generators
        self.epochs_ = {n: generators[n].best_epochs_ for n in EARLY_STOPPED if n in generators}
        users = users_with_holdout(valid)
        featurizer = CandidateFeaturizer(inner, item_features)
        cands, feats = self._candidates_and_features(generators, featurizer, users)
        truth = valid.matrix().tocsr()
        labels = np.zeros(cands.shape, dtype=np.float32)
        for row, u in enumerate(users):
            labels[row] = np.isin(cands[row], truth.indices[truth.indptr[u] : truth.indptr[u + 1]])
        self.valid_candidate_recall_ = float(
            labels.sum() / sum(min(cfg.valid_k, truth.indptr[u + 1] - truth.indptr[u]) for u in users)
        )
        t0 = time.perf_counter()
        if cfg.ranker == "gbdt":
            self.ranker_ = PointwiseGBDT(seed=cfg.seed).fit(feats, cands >= 0, labels)
        else:
            self.ranker_ = ListRanker(replace(cfg.ranker_config, loss=cfg.ranker, seed=cfg.seed)).fit(feats, cands >= 0, labels)
        self.train_seconds_by_part_["ranker"] = time.perf_counter() - t0
        self.generators_ = self._fit_generators(train, None, self.epochs_, item_features)
        self.featurizer_ = CandidateFeaturizer(train, item_features)
        del self.generators_inner_
        self.n_items_ = train.n_items
        self.train_seconds_ = time.perf_counter() - start
        return self

    def _candidates_and_features(
        self, generators: dict[str, Recommender], featurizer: CandidateFeaturizer, users: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Factor models (two-tower, ALS) retrieve their top-N through faiss; the others rank their
        full-catalog scores. Every generator's full scores also feed the features."""
        cfg = self.config
        retrievers = {n: FaissRetriever(g.item_embeddings()) for n, g in generators.items() if hasattr(g, "item_embeddings")}
        cands, feats = [], []
        for s in range(0, len(users), cfg.user_chunk):
            chunk = users[s : s + cfg.user_chunk]
            history = [featurizer.sequences[u] for u in chunk]
            seen = sp.csr_matrix(
                (np.ones(sum(map(len, history)), np.float32), np.concatenate([np.zeros(0, np.int64), *history]),
                 np.concatenate([[0], np.cumsum([len(h) for h in history])])),
                shape=(len(chunk), featurizer.n_items),
            )
            scores, tops = [], []
            for name in cfg.generators:
                model = generators[name]
                scores.append(np.asarray(model.score(chunk), dtype=np.float32))
                if name in retrievers:
                    vectors = model.user_embeddings(chunk)
                    tops.append(retrievers[name].search(vectors, cfg.per_generator, seen, np.arange(len(chunk)))[1])
                else:
                    tops.append(top_n_excluding(scores[-1], history, cfg.per_generator))
            c = union_candidates(tops, featurizer.n_items, cfg.budget)
            cands.append(c)
            feats.append(featurizer.features(chunk, c, scores))
        return np.concatenate(cands), np.concatenate(feats)

    def candidates(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(items, ranker scores), each (len(users), budget), best first; item -1 = no candidate."""
        users = np.asarray(users, dtype=np.int64)
        cands, feats = self._candidates_and_features(self.generators_, self.featurizer_, users)
        scores = self.ranker_.predict(feats, cands >= 0)
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(cands, order, axis=1), np.take_along_axis(scores, order, axis=1)

    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) float32: ranker scores on candidates, ``NOT_CANDIDATE`` elsewhere."""
        items, scores = self.candidates(users)
        out = np.full((len(items), self.n_items_), NOT_CANDIDATE, dtype=np.float32)
        rows, cols = np.nonzero(items >= 0)
        out[rows, items[rows, cols]] = scores[rows, cols]
        return out

    def save(self, path: str | Path) -> None:
        """Pickle the fitted model (generators, featurizer and ranker) to ``path``."""
        if not hasattr(self, "ranker_"):
            raise ValueError("PathwaysFinal must be fit before save")
        with open(path, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: str | Path) -> "PathwaysFinal":
        """Load a model written by ``save`` (trusted files only: this is pickle)."""
        with open(path, "rb") as fh:
            model = pickle.load(fh)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model
