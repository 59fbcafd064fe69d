"""Quick private bench of training/models on a MovieLens-format ratings.csv under leave-last-5.

Usage: python bench/models_quick.py [--data DIR] [--models sasrec,two_tower,...] [--runs N] [--json PATH]
Prints NDCG@20 / Recall@20 / train seconds per model (median of runs) and the ratio to EASE
measured in the same run. Validation (for early stopping / the ranker) is always carved from train.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "1073741824")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "4294967296")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from training.models.holdout import leave_last_k, ranking_metrics, users_with_holdout
from training.models.torch_utils import top_k_excluding
from training.recommender import Interactions

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def load_ratings(data_dir: Path) -> tuple[Interactions, pd.DataFrame | None]:
    """Every rating is a positive; dense ids in order of first appearance after sorting by id."""
    frame = pd.read_csv(data_dir / "ratings.csv")
    user_ids, users = np.unique(frame["userId"].to_numpy(), return_inverse=True)
    item_ids, items = np.unique(frame["movieId"].to_numpy(), return_inverse=True)
    movies = pd.read_csv(data_dir / "movies.csv") if (data_dir / "movies.csv").exists() else None
    data = Interactions(
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        timestamps=frame["timestamp"].to_numpy(np.int64),
        n_users=len(user_ids),
        n_items=len(item_ids),
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
    )
    return data, movies


def evaluate(model, train: Interactions, test: Interactions, k: int = 20) -> dict[str, float]:
    users = users_with_holdout(test)
    recs = top_k_excluding(np.asarray(model.score(users), np.float32).copy(), users, train.matrix(), k)
    return ranking_metrics(recs, users, test, k)
