"""Stored pages to ``CompactRows`` at load (``parse_pages``), and back to JSON per request (``TitleRenderer``).

A stored page of 40 x 40 titles is ~200 KB of JSON; as ``Page``/``TitleCard`` objects it costs
~50 ms per request to parse, edit and re-encode on this machine. Serving keeps each page's rows
as ``pathways.types.CompactRows`` (parallel arrays); names, maturity and artwork come from the
catalog (the authority) when the page is rendered. ``TitleRenderer`` pre-encodes each title's
constant JSON prefix so rendering a page is string joins, byte for byte what ``Row.to_dict``
gives (tests check both agree).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from pathways.catalog import Catalog
from pathways.types import CompactRows, RowHeader

_STORED_ROWS = pa.schema([
    ("rows", pa.list_(pa.struct([
        ("row_id", pa.string()), ("title", pa.string()), ("source", pa.string()), ("evidence", pa.string()),
        ("titles", pa.list_(pa.struct([("title_id", pa.int64()), ("score", pa.float64())]))),
    ]))),
])


def parse_pages(texts: Sequence[str]) -> list[CompactRows]:
    """Many stored page JSON texts (one ``Page.to_dict()`` each) at once with pyarrow's C++ JSON
    reader: ~2x faster than ``json.loads`` per page and no Python objects per title. Falls back to
    ``CompactRows.from_json`` per page when the batch is not one complete JSON object per line."""
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
        meta_cols = [structs.field(name).to_pylist() for name in RowHeader._fields]
        titles = structs.field("titles")
        ids_arr, scores_arr = titles.values.field("title_id"), titles.values.field("score")
        if any(None in col for col in meta_cols) or titles.null_count or ids_arr.null_count:
            raise ValueError("missing fields")
    except (pa.ArrowInvalid, ValueError):
        return [CompactRows.from_json(t) for t in texts]
    page_off = rows.offsets.to_numpy()
    row_off = titles.offsets.to_numpy().astype(np.int64)
    ids = ids_arr.to_numpy(zero_copy_only=False).astype(np.int64)
    scores = np.round(scores_arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64), 6)
    headers = [RowHeader(*m) for m in zip(*meta_cols)]
    out = []
    for p in range(len(texts)):
        r0, r1 = int(page_off[p]), int(page_off[p + 1])
        t0, t1 = int(row_off[r0]), int(row_off[r1])
        out.append(CompactRows(tuple(headers[r0:r1]), row_off[r0 : r1 + 1] - t0, ids[t0:t1], scores[t0:t1]))
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
        self.default_artwork = np.maximum(self.artwork[:, 0], 0)
        # The rest of a card showing the title's default artwork (propensity 1): most cards on most pages.
        self.default_suffix = [f',"artwork_id":{int(a)},"artwork_propensity":1.0}}' for a in self.default_artwork.tolist()]
        self._headers: dict[RowHeader, str] = {}
        self._order = np.argsort(catalog.title_ids, kind="stable")
        self._sorted_ids = catalog.title_ids[self._order]

    def positions(self, title_ids: np.ndarray) -> np.ndarray:
        """Catalog positions of ``title_ids`` (n,), -1 for unknown ids (vectorized ``Catalog.positions``)."""
        ids = np.asarray(title_ids, dtype=np.int64)
        if len(self._sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[at] == ids, self._order[at], -1).astype(np.int64)

    def rows_json(self, rows: CompactRows, artwork_ids: np.ndarray, propensities: np.ndarray) -> str:
        """The ``"rows"`` JSON array, byte-for-byte what ``json.dumps([r.to_dict() ...])`` would give
        with compact separators. Every title must be in the catalog (the rules see to it)."""
        pos_arr = self.positions(rows.title_ids)
        pos, prefix, scores = pos_arr.tolist(), self.prefix, rows.scores.tolist()
        props = np.round(propensities, 6)
        if len(pos_arr) and bool(np.all((props == 1.0) & (artwork_ids == self.default_artwork[pos_arr]))):
            suffix = self.default_suffix
            cards = [prefix[p] + repr(s) + suffix[p] for p, s in zip(pos, scores)]
        else:
            cards = [
                f'{prefix[p]}{s!r},"artwork_id":{a},"artwork_propensity":{q!r}}}'
                for p, s, a, q in zip(pos, scores, artwork_ids.tolist(), props.tolist())
            ]
        parts = []
        for r, m in enumerate(rows.headers):
            a, b = int(rows.offsets[r]), int(rows.offsets[r + 1])
            parts.append(f'{self._header(m)}{",".join(cards[a:b])}]}}')
        return "[" + ",".join(parts) + "]"

    def _header(self, m: RowHeader) -> str:
        """A row's JSON up to its titles' opening bracket, cached (rows repeat across pages)."""
        head = self._headers.get(m)
        if head is None:
            if len(self._headers) > 100_000:
                self._headers.clear()
            head = (f'{{"row_id":{json.dumps(m.row_id)},"title":{json.dumps(m.title)},"source":{json.dumps(m.source)},'
                    f'"evidence":{json.dumps(m.evidence)},"titles":[')
            self._headers[m] = head
        return head
