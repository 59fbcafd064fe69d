"""The snapshot's similar-titles table: per title, its top-k titles by cosine of the ALS item factors.

Serving builds the "Because you watched <title>" row of a title just played (a streamed play,
``serving/because.py``) from this table, since it holds no factors of its own. For every title
with ALS factors (and in the catalog, when one is given) it keeps the ``k``
(``candidates.similar_titles_k``) most similar other titles, best first, with their cosines
(``pathways.snapshot.SIMILAR_SCHEMA``). The similarity is the one ``candidates/because_you_watched.py``
ranks its nightly rows by: an exact faiss inner-product search over unit item vectors
(``FactorIndex(normalize=True)``), all titles queried in blocks of ``block`` (batch search, no
hand-written similarity).

Cost: the table and serving's copy of it are O(titles x k) (ids int64 + scores float32, ~12 bytes
an entry: 20k titles x 30 = 7 MB), independent of the number of profiles. Computing it is one exact
search per title, O(titles^2 x factors) multiply-adds done by faiss's BLAS (seconds for tens of
thousands of titles), memory O(block x titles) for the block's scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pathways.artifacts.factor_index import FactorIndex
from pathways.artifacts.factors import FactorArtifacts
from pathways.snapshot import SIMILAR_SCHEMA


def similar_titles_table(
    artifacts: FactorArtifacts, k: int, catalog_ids: np.ndarray | None = None, block: int = 1024
) -> pa.Table:
    """``SIMILAR_SCHEMA`` rows, one per title of ``artifacts`` (in ``catalog_ids`` when given), sorted
    by title id: its ``k`` most similar other titles (fewer when fewer exist), best first."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rows = np.arange(len(artifacts.title_ids))
    if catalog_ids is not None:
        rows = rows[np.isin(artifacts.title_ids, np.asarray(catalog_ids, dtype=np.int64))]
    if len(rows) == 0:
        return SIMILAR_SCHEMA.empty_table()
    order = rows[np.argsort(artifacts.title_ids[rows], kind="stable")]
    ids = artifacts.title_ids[order]
    index = FactorIndex(artifacts.item_factors[order], normalize=True)
    counts, flat_ids, flat_scores = [], [], []
    for start in range(0, len(ids), block):
        queries = np.arange(start, min(start + block, len(ids)))
        scores, found = index.search(index.vectors[queries], k + 1)
        valid = (found >= 0) & (found != queries[:, None])  # the title itself (wherever ties put it) is not kept
        first = np.argsort(~valid, axis=1, kind="stable")[:, :k]  # valid ones first, in faiss's order
        keep = np.take_along_axis(valid, first, axis=1)
        counts.append(keep.sum(axis=1))
        flat_ids.append(ids[np.take_along_axis(found, first, axis=1)[keep]])
        flat_scores.append(np.take_along_axis(scores, first, axis=1)[keep])
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int32)
    return pa.table(
        {
            "title_id": pa.array(ids, pa.int64()),
            "similar_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(flat_ids), pa.int64())),
            "scores": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(flat_scores), pa.float32())),
        },
        schema=SIMILAR_SCHEMA,
    )


def write_similar_titles(als_dir: Path, k: int, path: Path, catalog_ids: np.ndarray | None = None) -> int:
    """The table of the ALS factors saved in ``als_dir``, written to ``path`` (atomically); returns its rows."""
    table = similar_titles_table(FactorArtifacts.load(als_dir), k, catalog_ids)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return table.num_rows
