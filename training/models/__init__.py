"""Pathways' models, one module per algorithm, all behind ``training.recommender.Recommender``.

Baselines: ``Popularity``, ``ItemKNN``, ``EASE``, ``ALS``, ``BPR``; learned models: ``SASRec``,
``TwoTower``; the top row: ``PathwaysFinal`` (generators -> ``ltr`` ranker). Settings are the
``models`` section of ``PathwaysConfig``; build models by name through ``training.registry``.
"""

from __future__ import annotations

from training.models.als import ALS
from training.models.bpr import BPR
from training.models.ease import EASE
from training.models.final import PathwaysFinal
from training.models.item_knn import ItemKNN
from training.models.popularity import Popularity
from training.models.sasrec import SASRec
from training.models.two_tower import TwoTower

__all__ = ["ALS", "BPR", "EASE", "ItemKNN", "PathwaysFinal", "Popularity", "SASRec", "TwoTower"]
