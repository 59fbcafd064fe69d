"""The nightly top row: ``PathwaysFinal`` trained on the lake, its lists written, registered in MLflow.

``PathwaysFinal``: candidates from SASRec, two-tower, EASE, item-kNN, ALS and popularity ->
listwise learning-to-rank, registered as ``top_row`` (alias ``champion``). The nightly job writes
each profile's ranked list for the pages stage (``pathways/artifacts/top_lists.py``, served by
``candidates/precomputed.py``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa

from pathways import tracking
from pathways.artifacts.top_lists import TopLists
from pathways.catalog import Catalog
from pathways.models_config import ModelsConfig
from training.data import interactions_from_events
from training.models import PathwaysFinal

TOP_ROW_NAME = "top_row"


def _pyfunc_class():
    import mlflow.pyfunc

    class TopRowPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
        """``predict`` takes dense user indices, returns (items, scores) of the ranked candidates."""

        def load_context(self, context) -> None:  # noqa: ANN001 - MLflow's signature
            self.model = PathwaysFinal.load(context.artifacts["model"])

        def predict(self, context, model_input, params=None):  # noqa: ANN001
            items, _ = self.model.candidates(np.asarray(model_input, dtype=np.int64).ravel())
            return items.tolist()

    return TopRowPyfunc


def genre_features(catalog: Catalog, item_ids: np.ndarray) -> np.ndarray:
    """(len(item_ids), n_genres) multi-hot genres, rows in ``item_ids`` order."""
    genres = sorted({g for gs in catalog.genres for g in gs})
    col = {g: j for j, g in enumerate(genres)}
    out = np.zeros((len(item_ids), len(genres)), np.float32)
    for i, pos in enumerate(catalog.positions(item_ids)):
        if pos >= 0:
            out[i, [col[g] for g in catalog.genres[pos]]] = 1.0
    return out


def train_top_row(
    events: pa.Table, catalog: Catalog, out_dir: Path, seed: int, keep: int | None, run_name: str,
    models: ModelsConfig | None = None,
) -> dict[str, Any]:
    """Fit (settings: ``models``, default ``ModelsConfig()``), write ``top_row.parquet`` (``keep`` titles
    per profile, default all candidates: the pages stage also orders other rows by these scores),
    log and register. Returns facts."""
    inter = interactions_from_events(events, item_ids=catalog.title_ids)
    t0 = time.perf_counter()
    model = PathwaysFinal(models, seed=seed).fit(inter, item_features=genre_features(catalog, inter.item_ids))
    seconds = time.perf_counter() - t0
    users = np.arange(inter.n_users)
    items, scores = model.candidates(users)
    lists_ids, lists_scores = [], []
    for row_items, row_scores in zip(items, scores, strict=True):
        ok = row_items >= 0
        lists_ids.append(inter.item_ids[row_items[ok][:keep]])
        lists_scores.append(row_scores[ok][:keep])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = TopLists.from_arrays(inter.user_ids, lists_ids, lists_scores).save(out_dir / "top_row.parquet")
    with mlflow.start_run(run_name=run_name):
        tracking.log_params_flat({k: v for k, v in model.get_params().items() if not isinstance(v, dict)})
        mlflow.log_metrics({"fit_seconds": seconds, "n_interactions": float(len(inter)), "n_users": float(inter.n_users)})
        with tempfile.TemporaryDirectory() as tmp:
            model.save(Path(tmp) / "model.pkl")
            info = mlflow.pyfunc.log_model(
                name=TOP_ROW_NAME, python_model=_pyfunc_class()(), artifacts={"model": str(Path(tmp) / "model.pkl")},
                pip_requirements=tracking.PIP_REQUIREMENTS + ["scikit-learn==1.9.1"],
            )
    version = tracking.register(info.model_uri, TOP_ROW_NAME, alias=tracking.CHAMPION, tags={"kind": "pathways_final"})
    return {"path": str(path), "fit_seconds": round(seconds, 2), "profiles": int(inter.n_users), "version": version}
