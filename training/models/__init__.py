"""Pathways' learned models: SASRec, two-tower (+ faiss retrieval), light generators, the final ranker.

``MODELS`` maps a name to a zero-argument factory of a ``Recommender`` with default settings (the
same defaults for every data set); ``FINAL_MODEL`` names the model that serves the top row.
"""

from __future__ import annotations

from collections.abc import Callable

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

__all__ = [
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
