"""Pathways' learned models: SASRec, two-tower (+ faiss retrieval), light generators, the final ranker.

``MODELS`` maps a name to a zero-argument factory of a ``Recommender`` with default settings (the
same defaults for every data set); ``FINAL_MODEL`` names the model that serves the top row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from training.models.faiss_index import FaissRetriever
from training.models.final import FinalConfig, PathwaysFinal
from training.models.generators import ALS, EASE, ItemKNN, Popularity
from training.models.sasrec import SASRec, SASRecConfig
from training.models.two_tower import TwoTower, TwoTowerConfig
from training.recommender import Recommender

FINAL_MODEL = "pathways_final"

MODELS: dict[str, Callable[[], Recommender]] = {
    "sasrec": SASRec,
    "two_tower": TwoTower,
    "item_knn_recent": lambda: ItemKNN(recency_half_life=10.0, name="item_knn_recent"),
    FINAL_MODEL: PathwaysFinal,
}



def _genres(ctx: Any) -> np.ndarray | None:
    features = ctx.genre_features() if getattr(ctx, "item_genres", None) else None
    return features if features is not None and features.size and features.shape[1] > 0 else None


# For the evaluation harness: factories of ``training.evaluation.EvalContext`` (item genres, seed).
EVAL_MODELS: dict[str, Callable[[Any], Recommender]] = {
    "sasrec": lambda ctx: SASRec(seed=ctx.seed),
    "two_tower": lambda ctx: TwoTower(item_features=_genres(ctx), seed=ctx.seed),
    "item_knn_recent": lambda ctx: ItemKNN(recency_half_life=10.0, name="item_knn_recent"),
    FINAL_MODEL: lambda ctx: PathwaysFinal(item_features=_genres(ctx), seed=ctx.seed),
}

__all__ = [
    "EVAL_MODELS",
    "ALS",
    "EASE",
    "FINAL_MODEL",
    "MODELS",
    "FaissRetriever",
    "FinalConfig",
    "ItemKNN",
    "PathwaysFinal",
    "Popularity",
    "SASRec",
    "SASRecConfig",
    "TwoTower",
    "TwoTowerConfig",
]
