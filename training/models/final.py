"""PathwaysFinal: the top row = candidates from several generators, re-ranked by a learned ranker.

Fit, point-in-time:
1. Carve validation from the given train: per user the last ``valid_k`` interactions (``inner`` =
   the rest). Test data are never seen: whoever calls ``fit`` passes train only (a ``valid`` given
   to ``fit`` is not used).
2. Fit every generator (``models.final.generators``, built through ``training.registry``) on
   ``inner`` with the validation split (the early-stopped ones, SASRec and the two-tower, stop on
   it), build each user's candidate union and features as of ``inner``, and label a candidate 1
   when it is among the user's validation items. Fit the ranker (listwise MLP by default) on them.
   ``prefit`` generators (fit elsewhere exactly this way: ``training.shared_fit``) are not fit again.
3. Refit the other generators on all of train; early-stopped ones keep their step-2 weights and
   read the full train histories (``retrain_neural=True`` retrains them for the epoch count found
   in step 2 instead).

Every generator's full-catalog scores are put in order once per user (``RankedScores``): its
top-N (seen titles left out, ties by title index) and the candidates' rank features come from that
sort. (The factor models, two-tower and ALS, need their full scores for the features anyway, so
their top-N is not searched again through faiss here; the pages stage's rows are.)

``score(users)``: candidates and features from the refit generators, ranker scores on the
candidates and ``NOT_CANDIDATE`` (very low) elsewhere, so ``recommend`` works unchanged.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from pathways.models_config import FinalConfig, ModelsConfig
from training import registry
from training.evaluation.splits import leave_last_k
from training.models.base import configured
from training.models.candidate_features import CandidateFeaturizer, RankedScores
from training.models.ltr import ListRanker, PointwiseGBDT
from training.models.torch_utils import EarlyStoppedModel
from training.recommender import (
    FoldIn,
    Interactions,
    Pickled,
    Recommender,
    union_candidates,
)

NOT_CANDIDATE = -1e9


class PathwaysFinal(Pickled):
    """Candidates -> ranker, behind ``Recommender``. Settings: ``models.final`` plus the sections
    of the generators it uses; ``overrides`` replace keys of ``models.final``."""

    name = "pathways_final"

    def __init__(self, config: ModelsConfig | None = None, *, seed: int = 0, **overrides: Any) -> None:
        models = config if config is not None else ModelsConfig()
        self.config = models.model_copy(update={"final": configured(FinalConfig, models.final, overrides)})
        self.seed = seed

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled: settings added since the model was saved take their defaults."""
        self.__dict__.update(state)
        self.config = ModelsConfig.model_validate(self.config.model_dump())

    def get_params(self) -> dict[str, Any]:
        return {**self.config.final.model_dump(), "seed": self.seed}

    def _build_generators(self) -> dict[str, Recommender]:
        """Unfitted generators: the top row's own sections of ``models.final`` replace the defaults."""
        final = self.config.final
        models = self.config.model_copy(update={"popularity": final.popularity, "ease": final.ease, "als": final.als})
        ctx = registry.BuildContext(models=models, seed=self.seed)
        return {name: registry.build(name, ctx) for name in final.generators}

    def _fit_generators(
        self, train: Interactions, valid: Interactions | None, item_features: np.ndarray | None,
        prefit: Mapping[str, Recommender] | None = None,
    ) -> dict[str, Recommender]:
        """With ``valid``: fit all on ``train`` (those of ``prefit`` only read ``train``'s histories).
        Without: the refit on all of train (see the module docstring)."""
        fitted: dict[str, Recommender] = {}
        for name, model in self._build_generators().items():
            start = time.perf_counter()
            inner = self.generators_inner_.get(name)
            reused = prefit.get(name) if prefit and valid is not None else None
            if isinstance(reused, EarlyStoppedModel):
                model = reused.set_history(train)
                self.reused_generators_.append(name)
            elif valid is not None:
                model.fit(train, valid=valid, item_features=item_features)
            elif isinstance(inner, EarlyStoppedModel) and not self.config.final.retrain_neural:
                model = inner.set_history(train)
            elif isinstance(inner, EarlyStoppedModel):
                model.fit(train, item_features=item_features, epochs=inner.best_epochs_)
            else:
                model.fit(train, item_features=item_features)
            self.train_seconds_by_part_[f"{name}@{'inner' if valid is not None else 'full'}"] = time.perf_counter() - start
            fitted[name] = model
        return fitted

    def unfitted_generator(self, name: str) -> Recommender:
        """Generator ``name`` as this model would build it before fitting (its settings and seed)."""
        return self._build_generators()[name]

    def fit(self, train: Interactions, *, valid: Interactions | None = None,
            item_features: np.ndarray | None = None, prefit: Mapping[str, Recommender] | None = None) -> Self:
        """``prefit``: early-stopped generators already fit exactly as step 2 would fit them (same
        settings, seed, ``train`` and ``valid_k``: ``training.shared_fit.fit_key``), taken as they are."""
        cfg = self.config.final
        start = time.perf_counter()
        self.train_seconds_by_part_: dict[str, float] = {}
        self.reused_generators_: list[str] = []
        inner, held = leave_last_k(train, cfg.valid_k)
        if len(held) == 0:
            raise ValueError(f"no user has more than {cfg.valid_k} interactions: cannot carve validation")
        self.generators_inner_: dict[str, Recommender] = {}
        self.generators_inner_ = self._fit_generators(inner, held, item_features, prefit)
        self.epochs_ = {n: g.best_epochs_ for n, g in self.generators_inner_.items() if isinstance(g, EarlyStoppedModel)}
        users = np.unique(held.users)
        cands, feats = self._candidates_and_features(self.generators_inner_, CandidateFeaturizer(inner, item_features), users)
        truth = held.matrix().tocsr()
        labels = np.zeros(cands.shape, dtype=np.float32)
        for row, u in enumerate(users):
            labels[row] = np.isin(cands[row], truth.indices[truth.indptr[u] : truth.indptr[u + 1]])
        self.valid_candidate_recall_ = float(
            labels.sum() / sum(min(cfg.valid_k, truth.indptr[u + 1] - truth.indptr[u]) for u in users)
        )
        t0 = time.perf_counter()
        if cfg.ranker == "gbdt":
            self.ranker_: ListRanker | PointwiseGBDT = PointwiseGBDT(self.config.ltr, seed=self.seed)
        else:
            self.ranker_ = ListRanker(self.config.ltr, seed=self.seed, loss=cfg.ranker)
        self.ranker_.fit(feats, cands >= 0, labels)
        self.train_seconds_by_part_["ranker"] = time.perf_counter() - t0
        self.generators_ = self._fit_generators(train, None, item_features)
        self.featurizer_ = CandidateFeaturizer(train, item_features)
        del self.generators_inner_
        self.n_items_ = train.n_items
        self.train_seconds_ = time.perf_counter() - start
        return self

    def _candidates_and_features(
        self, generators: dict[str, Recommender], featurizer: CandidateFeaturizer, users: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each generator's top ``per_generator`` (seen items excluded), their union, and features;
        every generator's full scores also feed the features. One sort of each generator's scores
        (``RankedScores``) gives both its top list and the candidates' ranks: the factor models'
        full scores are needed for the features anyway, so a faiss search would be a second GEMM
        over the catalog (it had been 10% of a list's time)."""
        cfg = self.config.final
        cands, feats = [], []
        for s in range(0, len(users), cfg.score_chunk):
            chunk = users[s : s + cfg.score_chunk]
            seen = np.zeros((len(chunk), featurizer.n_items), bool)
            for row, u in enumerate(chunk):
                seen[row, featurizer.sequences[u]] = True
            ranked = [RankedScores(generators[name].score(chunk)) for name in cfg.generators]
            c = union_candidates([r.top(seen, cfg.per_generator) for r in ranked], featurizer.n_items, cfg.budget)
            cands.append(c)
            feats.append(featurizer.features(chunk, c, ranked))
        return np.concatenate(cands), np.concatenate(feats)

    def fold_in(self, data: Interactions) -> Self:
        """A copy ranking for ``data``'s users (``FoldIn``): every generator folds them in with its own
        inference (SASRec / two-tower encode the sequences, EASE / item-kNN read the rows, ALS solves
        each user against its item factors), the featurizer takes their histories, the ranker is
        unchanged. Cost: linear in ``data``'s interactions (ALS: x factors^2)."""
        folded: dict[str, Recommender] = {}
        for name, model in self.generators_.items():
            if not isinstance(model, FoldIn):
                raise TypeError(f"generator {name} cannot fold in new users (no fold_in)")
            folded[name] = model.fold_in(data)
        out = copy.copy(self)
        out.generators_ = folded
        out.featurizer_ = self.featurizer_.with_users(data)
        return out

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
