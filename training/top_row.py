"""The nightly top row: ``PathwaysFinal`` trained on the lake, its lists written, registered in MLflow.

``PathwaysFinal``: candidates from SASRec, two-tower, EASE, item-kNN, ALS and popularity ->
listwise learning-to-rank, registered as ``top_row`` (alias ``champion``). The nightly job writes
each profile's ranked list for the pages stage (``pathways/artifacts/top_lists.py``, served by
``candidates/precomputed.py``).

Cost: fitting grows with the training events (a sample: ``schedule.sample_profiles``) and the
titles (EASE is titles x titles); the lists are written ``models.final.user_chunk`` users at a
time, so memory does not grow with profiles beyond the lists' file. The profiles a training sample
left out get lists too: each block of them is folded into the fitted model
(``PathwaysFinal.fold_in``: every generator's own inference on their histories, no retraining), at
a cost linear in their interactions, one block in memory. A generator another stage already fit on
the same data with the same settings (``shared``: name -> its saved model; used only when its
``training.shared_fit`` key matches this fit's) is taken as it is instead of being fit again."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pathways import tracking
from pathways.artifacts.top_lists import SCHEMA as TOP_LISTS_SCHEMA
from pathways.catalog import Catalog
from pathways.models_config import ModelsConfig
from pathways.parallel import ordered_map
from training.data import fold_in_blocks, interactions_from_events
from training.models import PathwaysFinal
from training.models.torch_utils import EarlyStoppedModel
from training.recommender import Interactions, Recommender
from training.shared_fit import fit_key, load_shared

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


def write_lists(model: PathwaysFinal, n_users: int, user_ids: np.ndarray, item_ids: np.ndarray, keep: int | None,
                path: Path, block: int, extra: Iterable[tuple[PathwaysFinal, np.ndarray]] = (), threads: int = 1) -> Path:
    """Each trained user's ranked list, ``block`` users at a time (the candidate features of one
    block in memory, never all users') appended to the ``TopLists`` Parquet file ``path``; then the
    users of each ``(folded-in model, its profile ids)`` of ``extra``, the same way. ``threads``
    blocks are ranked at once (``pathways.parallel.ordered_map``: the same bytes on any number)."""

    def blocks() -> Iterator[tuple[PathwaysFinal, np.ndarray, np.ndarray]]:
        for ranker, ids in chain([(model, user_ids[:n_users])], extra):  # lazily: one folded block at a time
            for lo in range(0, len(ids), block):
                yield ranker, ids[lo:lo + block], np.arange(lo, min(lo + block, len(ids)))

    def ranked(task: tuple[PathwaysFinal, np.ndarray, np.ndarray]) -> pa.Table:
        ranker, ids, users = task
        items, scores = ranker.candidates(users)
        ok = [row >= 0 for row in items]
        return pa.table({
            "profile_id": pa.array(ids, pa.int64()),
            "title_ids": pa.array([item_ids[r[m][:keep]] for r, m in zip(items, ok)], pa.list_(pa.int64())),
            "scores": pa.array([r[m][:keep] for r, m in zip(scores, ok)], pa.list_(pa.float32())),
        }, schema=TOP_LISTS_SCHEMA)

    tmp = path.with_suffix(".tmp")
    # plain encoding: a dictionary tried on the scores, nearly all distinct, is given up page by page, at
    # 4x the write time of a block (56 -> 14 ms for 512 lists of 500, measured; the file 1% smaller)
    with pq.ParquetWriter(tmp, TOP_LISTS_SCHEMA, use_dictionary=False) as writer:
        for table in ordered_map(ranked, blocks(), threads, name="top-row"):
            writer.write_table(table)
    tmp.replace(path)
    return path


def folded_in(model: PathwaysFinal, tables: Iterable[pa.Table], item_ids: np.ndarray) -> Iterator[tuple[PathwaysFinal, np.ndarray]]:
    """(the model folded in on a block, the block's profile ids) for each block of events in ``tables``."""
    for block in fold_in_blocks(tables, item_ids):
        yield model.fold_in(block), block.user_ids


def train_top_row(
    events: pa.Table, catalog: Catalog, out_dir: Path, seed: int, keep: int | None, run_name: str,
    models: ModelsConfig | None = None, unsampled: Callable[[], Iterable[pa.Table]] | None = None,
    shared: Mapping[str, str | Path] | None = None, threads: int = 1,
) -> dict[str, Any]:
    """Fit (settings: ``models``, default ``ModelsConfig()``), write ``top_row.parquet`` (``keep`` titles
    per profile, default all candidates: the pages stage also orders other rows by these scores) for
    the trained profiles and those of ``unsampled()`` (blocks of events of profiles left out of
    ``events``, folded in; ``threads`` blocks ranked at once), log and register. Returns facts."""
    inter = interactions_from_events(events, item_ids=catalog.title_ids)
    t0 = time.perf_counter()
    model = PathwaysFinal(models, seed=seed)
    features = genre_features(catalog, inter.item_ids)
    model.fit(inter, item_features=features, prefit=shared_generators(model, inter, features, shared or {}))
    seconds = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = folded_in(model, unsampled(), inter.item_ids) if unsampled is not None else ()
    path = write_lists(model, inter.n_users, inter.user_ids, inter.item_ids, keep, out_dir / "top_row.parquet",
                       model.config.final.user_chunk, extra, threads)
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
    return {"path": str(path), "fit_seconds": round(seconds, 2), "profiles": int(inter.n_users),
            "lists": pq.ParquetFile(path).metadata.num_rows, "version": version,
            "reused_generators": ",".join(model.reused_generators_)}


def shared_generators(model: PathwaysFinal, train: Interactions, item_features: np.ndarray | None,
                      shared: Mapping[str, str | Path]) -> dict[str, Recommender]:
    """The models of ``shared`` fit exactly as ``model`` would fit its generator of that name on
    ``train`` (``training.shared_fit.fit_key`` matches), loaded; the others are left out."""
    out: dict[str, Recommender] = {}
    for name, path in shared.items():
        if name not in model.config.final.generators:
            continue
        unfitted = model.unfitted_generator(name)
        if not isinstance(unfitted, EarlyStoppedModel):
            continue
        loaded = load_shared(path, fit_key(unfitted, train, model.config.final.valid_k, item_features))
        if isinstance(loaded, Recommender):
            out[name] = loaded
    return out
