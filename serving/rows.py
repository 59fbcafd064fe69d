"""Pages in columnar form for the request path: parse once at load, render JSON without objects.

A stored page of 40 x 40 titles is ~200 KB of JSON; as ``Page``/``TitleCard`` objects it costs
~50 ms per request to parse, edit and re-encode on this machine. ``PageRows`` keeps the rows as
parallel arrays (title ids, scores, row offsets) plus one small tuple per row; names, maturity and
artwork come from the catalog (the authority) when the page is rendered. ``TitleRenderer``
pre-encodes each title's constant JSON prefix so rendering a page is string joins.
``PageRows.to_rows`` gives the same rows as ``pathways.types.Row`` (tests check both agree).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from pathways.catalog import Catalog
from pathways.types import Row, TitleCard


class RowMeta(NamedTuple):
    row_id: str
    title: str
    source: str
    evidence: str


@dataclass(frozen=True)
class PageRows:
    """Row r holds ``title_ids[offsets[r]:offsets[r + 1]]`` (int64) with ``scores`` (float64,
    rounded to 6 decimals as ``TitleCard.to_dict`` serves them)."""

    meta: tuple[RowMeta, ...]
    offsets: np.ndarray  # int64 (R + 1,)
    title_ids: np.ndarray  # int64 (n,)
    scores: np.ndarray  # float64 (n,)

    @classmethod
    def empty(cls) -> "PageRows":
        return cls((), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @classmethod
    def build(cls, meta: Sequence[RowMeta], ids: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> "PageRows":
        if not meta:
            return cls.empty()
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat_scores = np.round(np.concatenate(scores).astype(np.float64), 6)  # as served (TitleCard.to_dict)
        return cls(tuple(meta), offsets, np.concatenate(ids).astype(np.int64), flat_scores)

    @classmethod
    def from_json(cls, page_json: str) -> "PageRows":
        """From a stored ``Page.to_dict()`` JSON text (only the rows are kept)."""
        return cls.from_dicts(json.loads(page_json)["rows"])

    @classmethod
    def from_dicts(cls, rows: list[dict[str, Any]]) -> "PageRows":
        meta = [RowMeta(str(r["row_id"]), str(r["title"]), str(r["source"]), str(r["evidence"])) for r in rows]
        ids = [np.array([t["title_id"] for t in r["titles"]], dtype=np.int64) for r in rows]
        scores = [np.array([t.get("score", 0.0) for t in r["titles"]], dtype=np.float64) for r in rows]
        return cls.build(meta, ids, scores)

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> "PageRows":
        meta = [RowMeta(r.row_id, r.title, r.source, r.evidence) for r in rows]
        ids = [np.array([t.title_id for t in r.titles], dtype=np.int64) for r in rows]
        scores = [np.array([t.score for t in r.titles], dtype=np.float64) for r in rows]
        return cls.build(meta, ids, scores)

    def __len__(self) -> int:
        return len(self.meta)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.offsets[r]), int(self.offsets[r + 1])
        return self.title_ids[a:b], self.scores[a:b]

    def positions(self) -> np.ndarray:
        """Column of each title within its row, int64 (n,)."""
        starts = np.repeat(self.offsets[:-1], np.diff(self.offsets))
        return np.arange(len(self.title_ids), dtype=np.int64) - starts

    def to_rows(self, catalog: Catalog, artwork_ids: np.ndarray, propensities: np.ndarray) -> tuple[Row, ...]:
        """As ``Row`` objects (names and maturity from ``catalog``); every title must be in it."""
        out = []
        for r, m in enumerate(self.meta):
            a, b = int(self.offsets[r]), int(self.offsets[r + 1])
            cards = tuple(
                TitleCard(int(t), catalog.name(int(t)), int(catalog.maturity[catalog.index[int(t)]]), float(s), int(art), float(p))
                for t, s, art, p in zip(self.title_ids[a:b], self.scores[a:b], artwork_ids[a:b], propensities[a:b])
            )
            out.append(Row(m.row_id, m.title, m.source, m.evidence, cards))
        return tuple(out)


_STORED_ROWS = pa.schema([
    ("rows", pa.list_(pa.struct([
        ("row_id", pa.string()), ("title", pa.string()), ("source", pa.string()), ("evidence", pa.string()),
        ("titles", pa.list_(pa.struct([("title_id", pa.int64()), ("score", pa.float64())]))),
    ]))),
])


def parse_pages(texts: Sequence[str]) -> list[PageRows]:
    """Many stored page JSON texts (one ``Page.to_dict()`` each) at once with pyarrow's C++ JSON
    reader: ~2x faster than ``json.loads`` per page and no Python objects per title. Falls back to
    ``PageRows.from_json`` per page when the batch is not one complete JSON object per line."""
    if not texts:
        return []
    try:
        table = pa_json.read_json(
            pa.BufferReader("\n".join(texts).encode()),
            read_options=pa_json.ReadOptions(block_size=max(len(t) for t in texts) + (1 << 16)),
            parse_options=pa_json.ParseOptions(explicit_schema=_STORED_ROWS, unexpected_field_behavior="ignore"),
        )
        rows = table.column("rows").combine_chunks()
        if table.num_rows != len(texts) or rows.null_count:
            raise ValueError("not one page per line")
        structs = rows.values
        meta_cols = [structs.field(name).to_pylist() for name in RowMeta._fields]
        titles = structs.field("titles")
        ids_arr, scores_arr = titles.values.field("title_id"), titles.values.field("score")
        if any(None in col for col in meta_cols) or titles.null_count or ids_arr.null_count:
            raise ValueError("missing fields")
    except (pa.ArrowInvalid, ValueError):
        return [PageRows.from_json(t) for t in texts]
    page_off = rows.offsets.to_numpy()
    row_off = titles.offsets.to_numpy().astype(np.int64)
    ids = ids_arr.to_numpy(zero_copy_only=False).astype(np.int64)
    scores = np.round(scores_arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64), 6)
    meta = [RowMeta(*m) for m in zip(*meta_cols)]
    out = []
    for p in range(len(texts)):
        r0, r1 = int(page_off[p]), int(page_off[p + 1])
        t0, t1 = int(row_off[r0]), int(row_off[r1])
        out.append(PageRows(tuple(meta[r0:r1]), row_off[r0 : r1 + 1] - t0, ids[t0:t1], scores[t0:t1]))
    return out


class TitleRenderer:
    """Per-catalog JSON fragments: ``'{"title_id":1,"name":"…","maturity_level":2,"score":'``.

    ``artwork``: (T, A_max) int64 variant ids, -1 where a title has fewer variants; ``n_variants`` (T,).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.prefix = [
            f'{{"title_id":{int(t)},"name":{json.dumps(n)},"maturity_level":{int(m)},"score":'
            for t, n, m in zip(catalog.title_ids.tolist(), catalog.names, catalog.maturity.tolist())
        ]
        a_max = max((len(a) for a in catalog.artwork_ids), default=1) or 1
        self.artwork = np.full((len(catalog), a_max), -1, dtype=np.int64)
        for i, arts in enumerate(catalog.artwork_ids):
            self.artwork[i, : len(arts)] = arts
        self.n_variants = np.array([len(a) for a in catalog.artwork_ids], dtype=np.int64)
        self._order = np.argsort(catalog.title_ids, kind="stable")
        self._sorted_ids = catalog.title_ids[self._order]

    def positions(self, title_ids: np.ndarray) -> np.ndarray:
        """Catalog positions of ``title_ids`` (n,), -1 for unknown ids (vectorized ``Catalog.positions``)."""
        ids = np.asarray(title_ids, dtype=np.int64)
        if len(self._sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[at] == ids, self._order[at], -1).astype(np.int64)

    def rows_json(self, rows: PageRows, artwork_ids: np.ndarray, propensities: np.ndarray) -> str:
        """The ``"rows"`` JSON array, byte-for-byte what ``json.dumps([r.to_dict() ...])`` would give
        with compact separators. Every title must be in the catalog (``enforce_rows`` sees to it)."""
        pos = self.positions(rows.title_ids).tolist()
        prefix = self.prefix
        cards = [
            f'{prefix[p]}{s!r},"artwork_id":{a},"artwork_propensity":{q!r}}}'
            for p, s, a, q in zip(pos, rows.scores.tolist(), artwork_ids.tolist(), np.round(propensities, 6).tolist())
        ]
        parts = []
        for r, m in enumerate(rows.meta):
            a, b = int(rows.offsets[r]), int(rows.offsets[r + 1])
            parts.append(
                f'{{"row_id":{json.dumps(m.row_id)},"title":{json.dumps(m.title)},"source":{json.dumps(m.source)},'
                f'"evidence":{json.dumps(m.evidence)},"titles":[{",".join(cards[a:b])}]}}'
            )
        return "[" + ",".join(parts) + "]"
