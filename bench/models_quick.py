"""Quick private bench of training/models on a MovieLens-format ratings.csv under leave-last-5.

Usage: python bench/models_quick.py [--data DIR] [--models sasrec,two_tower,...] [--runs N] [--json PATH]
       [--model-overrides '{"sasrec": {"full_softmax_max_items": 1000}}']
DIR is a MovieLens folder or a synthetic world folder (``training.data.load_dataset``).
Prints NDCG@20 / Recall@20 / train seconds per model (median of runs) and the ratio to EASE
measured in the same run. Validation (for early stopping / the ranker) is always carved from train.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "1073741824")
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "4294967296")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's packages before bench/*.py (features)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from training.evaluation.metrics import ndcg_recall  # noqa: E402
from training.evaluation.splits import leave_last_k  # noqa: E402
from training.recommender import Interactions, top_k_excluding  # noqa: E402

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
    users = np.unique(test.users)
    recs = top_k_excluding(np.asarray(model.score(users), np.float32).copy(), users, train.matrix(), k)
    return ndcg_recall(recs, users, test.matrix(binary=True).tocsr(), k)


def genre_features(data: Interactions, movies: pd.DataFrame | None) -> np.ndarray | None:
    """(n_items, n_genres) multi-hot of movies.csv genres, rows in dense item order."""
    if movies is None:
        return None
    genres = movies.set_index("movieId").reindex(data.item_ids)["genres"].fillna("").str.get_dummies("|")
    return genres.drop(columns=[c for c in genres.columns if c.startswith("(")]).to_numpy(np.float32)


def tuned_baseline(name: str, grid: list[dict], train: Interactions, test: Interactions) -> dict:
    """Pick the grid point with the best validation NDCG@20 (valid carved from train), refit on train.

    The models are configured as PathwaysFinal's generators (``models.final.<name>`` where it has one)."""
    from pathways.models_config import ModelsConfig
    from training.models import ALS, EASE, ItemKNN

    models = ModelsConfig()
    cls, section = {"ease": (EASE, models.final.ease), "item_knn": (ItemKNN, models.item_knn),
                    "als": (ALS, models.final.als)}[name]

    def factory(**params):
        return cls(section, **params)

    inner, valid = leave_last_k(train, 5)
    best = max(grid, key=lambda params: evaluate(factory(**params).fit(inner), inner, valid)["ndcg@20"])
    start = time.perf_counter()
    model = factory(**best).fit(train)
    seconds = time.perf_counter() - start
    return {"model": f"{name} {best}", **evaluate(model, train, test), "train_s": seconds}


def run_model(
    name: str, train: Interactions, test: Interactions, item_features: np.ndarray | None, overrides: dict | None = None,
    model_overrides: dict | None = None,
) -> dict:
    from pathways.models_config import ModelsConfig
    from training.models import PathwaysFinal
    from training.registry import BuildContext, build

    models = ModelsConfig.model_validate(model_overrides or {})
    start = time.perf_counter()
    if name.startswith("pathways_final"):
        ranker = name.split(":")[1] if ":" in name else "listwise"
        model = PathwaysFinal(models, ranker=ranker, **(overrides or {})).fit(train, item_features=item_features)
    else:  # models that use no item features ignore them
        model = build(name, BuildContext(models=models)).fit(train, item_features=item_features)
    seconds = time.perf_counter() - start
    row = {"model": name, **evaluate(model, train, test), "train_s": seconds}
    if hasattr(model, "best_epochs_"):
        row["best_epochs"] = model.best_epochs_
    if hasattr(model, "train_seconds_by_part_"):
        row["parts"] = {k: round(v, 1) for k, v in model.train_seconds_by_part_.items()}
        row["valid_candidate_recall"] = model.valid_candidate_recall_
    return row


BASELINE_GRIDS = {
    "ease": [{"l2": v} for v in (100.0, 200.0, 500.0, 1000.0)],
    "item_knn": [{"k": n} for n in (50, 100, 200)],
    "als": [{"factors": f, "regularization": r} for f in (32, 64) for r in (0.01, 0.1)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--baselines", default="ease,item_knn,als")
    parser.add_argument("--models", default="sasrec,two_tower,item_knn_recent,pathways_final")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--final-overrides", type=json.loads, default={}, help='e.g. {"budget": 500}')
    parser.add_argument("--model-overrides", type=json.loads, default={},
                        help='sections of models, e.g. {"sasrec": {"full_softmax_max_items": 1000}}')
    args = parser.parse_args()
    from training.data import load_dataset
    from training.evaluation.metrics import genre_matrix

    dataset = load_dataset(args.data)  # a MovieLens folder or a synthetic world folder
    data = dataset.interactions
    train, test = leave_last_k(data, 5)
    has_genres = any(dataset.item_genres)
    features = genre_matrix(dataset.item_genres) if has_genres else None
    print(f"{args.data}: {data.n_users} users, {data.n_items} items, {len(data)} interactions", flush=True)
    rows = [tuned_baseline(b, BASELINE_GRIDS[b], train, test) for b in filter(None, args.baselines.split(","))]
    for name in filter(None, args.models.split(",")):
        runs = [run_model(name, train, test, features, args.final_overrides, args.model_overrides) for _ in range(args.runs)]
        med = {k: float(np.median([r[k] for r in runs])) for k in ("ndcg@20", "recall@20", "train_s")}
        rows.append({**runs[0], **med})
        print(rows[-1], flush=True)
    best = max((r for r in rows if r["model"].split()[0] in BASELINE_GRIDS), key=lambda r: r["ndcg@20"], default=None)
    print(f"\n{'model':<48} {'NDCG@20':>8} {'R@20':>7} {'xNDCG':>6} {'xR':>6} {'train s':>8}")
    for r in rows:
        xn = r["ndcg@20"] / best["ndcg@20"] if best else float("nan")
        xr = r["recall@20"] / best["recall@20"] if best else float("nan")
        print(f"{r['model'][:48]:<48} {r['ndcg@20']:8.4f} {r['recall@20']:7.4f} {xn:6.2f} {xr:6.2f} {r['train_s']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
