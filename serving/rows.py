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
from collections.abc import Iterable, Sequence
from itertools import islice, repeat

import numpy as np
import orjson
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
    """Per-catalog JSON fragments (bytes): ``b'{"title_id":1,"name":"…","maturity_level":2,"score":'``.

    ``artwork``: (T, A_max) int64 variant ids, -1 where a title has fewer variants; ``n_variants`` (T,).
    ``positions`` maps title ids to catalog positions through a dense table when the ids are small
    non-negative integers (a catalog's usually are), else by binary search.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.prefix = [
            f'{{"title_id":{int(t)},"name":{json.dumps(n)},"maturity_level":{int(m)},"score":'.encode()
            for t, n, m in zip(catalog.title_ids.tolist(), catalog.names, catalog.maturity.tolist())
        ]
        a_max = max((len(a) for a in catalog.artwork_ids), default=1) or 1
        self.artwork = np.full((len(catalog), a_max), -1, dtype=np.int64)
        for i, arts in enumerate(catalog.artwork_ids):
            self.artwork[i, : len(arts)] = arts
        self.n_variants = np.array([len(a) for a in catalog.artwork_ids], dtype=np.int64)
        self.default_artwork = np.maximum(self.artwork[:, 0], 0)
        # The rest of a card showing the title's default artwork (propensity 1): most cards on most pages.
        self.default_suffix = [f',"artwork_id":{int(a)},"artwork_propensity":1.0}}'.encode()
                               for a in self.default_artwork.tolist()]
        self._prefix = np.array(self.prefix + [b""], dtype=object)  # object arrays: one fancy index per page
        # A card's artwork up to its propensity, per (title, variant): a policy's choices are a fancy index.
        self._artwork_head = np.array([[f',"artwork_id":{a},"artwork_propensity":'.encode() for a in arts]
                                       for arts in self.artwork.tolist()], dtype=object).reshape(self.artwork.shape)
        self._default_suffix = np.array(self.default_suffix + [b""], dtype=object)
        self._headers: dict[RowHeader, bytes] = {}
        self._order = np.argsort(catalog.title_ids, kind="stable")
        self._sorted_ids = catalog.title_ids[self._order]
        self._dense: np.ndarray | None = None
        ids = catalog.title_ids
        if len(ids) and int(ids.min()) >= 0 and int(ids.max()) < _DENSE_IDS_PER_TITLE * len(ids) + _DENSE_MIN:
            self._dense = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
            self._dense[ids[::-1]] = np.arange(len(ids) - 1, -1, -1)  # the first position of a repeated id

    def positions(self, title_ids: np.ndarray) -> np.ndarray:
        """Catalog positions of ``title_ids`` (n,), -1 for unknown ids (vectorized ``Catalog.positions``)."""
        ids = np.asarray(title_ids, dtype=np.int64)
        if len(self._sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        dense = self._dense
        if dense is not None:
            inside = (ids >= 0) & (ids < len(dense))
            if inside.all():
                return dense[ids]
            return np.where(inside, dense[np.where(inside, ids, 0)], -1)
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[at] == ids, self._order[at], -1).astype(np.int64)

    def rows_json(self, rows: CompactRows, artwork_ids: np.ndarray, propensities: np.ndarray,
                  positions: np.ndarray | None = None) -> bytes:
        """The ``"rows"`` JSON array, byte-for-byte what ``json.dumps([r.to_dict() ...])`` would give
        with compact separators. Every title must be in the catalog (the rules see to it);
        ``positions``: ``self.positions(rows.title_ids)`` when the caller has them already.

        Cost: one fancy index per fragment kind, the numbers written by orjson in one call per
        array (checked to be ``repr``'s text, else ``repr``), one join; no per-title Python code."""
        n = len(rows.title_ids)
        pos = self.positions(rows.title_ids) if positions is None else positions
        props = np.round(propensities, 6)
        default = bool(n) and bool(np.all((props == 1.0) & (artwork_ids == self.default_artwork[pos])))
        columns: list[Iterable[bytes]] = [self._prefix[pos].tolist(), _float_texts(rows.scores)]
        if default:
            columns.append(self._default_suffix[pos].tolist())
        elif n and bool(np.all(pos >= 0)) and (arms := _variants(self.artwork[pos], artwork_ids)) is not None:
            values, which = np.unique(props, return_inverse=True)  # a policy's propensities take few values
            tails = np.array([t + b"}" for t in _float_texts(values)], dtype=object)
            columns += [self._artwork_head[pos, arms].tolist(), tails[which.reshape(-1)].tolist()]
        else:
            columns += [repeat(b',"artwork_id":'), _int_texts(artwork_ids), repeat(b',"artwork_propensity":'),
                        _float_texts(props), repeat(b"}")]
        lengths = np.diff(rows.offsets)
        if n == 0 or not lengths.all():  # an empty row: cards joined row by row
            cards = list(map(b"".join, zip(*columns)))
            parts = [self._header(m) + b",".join(cards[int(rows.offsets[r]) : int(rows.offsets[r + 1])]) + b"]}"
                     for r, m in enumerate(rows.headers)]
            return b"[" + b",".join(parts) + b"]"
        # Every row has a card: the separator after each card is ",", or "]}," + the next row's header.
        seps = [b","] * n
        heads = [self._header(m) for m in rows.headers]
        for r, end in enumerate((rows.offsets[1:] - 1).tolist()):
            seps[end] = b"]}," + heads[r + 1] if r + 1 < len(heads) else b"]}]"
        columns.append(seps)
        pieces: list[bytes] = [b""] * (len(columns) * n)  # interleaved by slice assignment: C speed, no tuples
        for j, column in enumerate(columns):
            pieces[j :: len(columns)] = column if isinstance(column, list) else list(islice(column, n))
        return b"[" + heads[0] + b"".join(pieces)

    def _header(self, m: RowHeader) -> bytes:
        """A row's JSON up to its titles' opening bracket, cached (rows repeat across pages)."""
        head = self._headers.get(m)
        if head is None:
            if len(self._headers) > 100_000:
                self._headers.clear()
            head = (f'{{"row_id":{json.dumps(m.row_id)},"title":{json.dumps(m.title)},"source":{json.dumps(m.source)},'
                    f'"evidence":{json.dumps(m.evidence)},"titles":[').encode()
            self._headers[m] = head
        return head


_DENSE_IDS_PER_TITLE, _DENSE_MIN = 8, 1 << 16  # a dense id table at most 8 slots a title (or 64 Ki slots)
# orjson writes a float as ``repr`` does (shortest round trip) where ``repr`` is positional: 0 and
# magnitudes in [1e-4, 1e16); checked over millions of 6-decimal values. Outside that, ``repr``.
_ORJSON_FLOAT_MIN, _ORJSON_FLOAT_MAX = 1e-4, 1e15


def _float_texts(values: np.ndarray) -> list[bytes]:
    """``repr(float(v)).encode()`` of every value, written by orjson when it writes the same text."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return []
    m = np.abs(v)
    if bool(np.all((v == 0.0) | ((m >= _ORJSON_FLOAT_MIN) & (m < _ORJSON_FLOAT_MAX)))):
        texts: list[bytes] = orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
        return texts
    return [repr(x).encode() for x in v.tolist()]


def _variants(variants: np.ndarray, artwork_ids: np.ndarray) -> np.ndarray | None:
    """Which of each title's variants (n, A_max) is ``artwork_ids`` (n,); None when one is none of them."""
    hit = variants == np.asarray(artwork_ids, dtype=np.int64)[:, None]
    return hit.argmax(axis=1) if bool(hit.any(axis=1).all()) else None


def _int_texts(values: np.ndarray) -> list[bytes]:
    """The decimal text of every integer."""
    v = np.asarray(values, dtype=np.int64)
    return orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",") if len(v) else []
