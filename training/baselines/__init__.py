"""Strong simple baselines behind the ``Recommender`` protocol, each with an Optuna search space.

Every class stores hyperparameters in ``__init__`` and learned state (``*_``) in ``fit``;
``search_space(trial) -> dict`` names the tunable hyperparameters and their ranges.
"""

from training.baselines.ease import EASE
from training.baselines.implicit_mf import ALS, BPR
from training.baselines.itemknn import ItemKNN
from training.baselines.popularity import Popularity

BASELINES = {"pop": Popularity, "itemknn": ItemKNN, "ease": EASE, "als": ALS, "bpr": BPR}

__all__ = ["ALS", "BASELINES", "BPR", "EASE", "ItemKNN", "Popularity"]
