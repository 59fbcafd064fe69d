"""One profile's published page as compact bytes: the page store's value (``encode_page``/``decode_page``).

What serving needs of a page, and nothing else: the A/B cell it was built for and its rows as
``CompactRows`` (headers, title ids, scores); names, maturity and artwork come from the catalog.
Layout (little-endian)::

    b"PWZ1" | n_rows:u32 | body_len:u32 | zstd(body, level 1)       (pyarrow's codec)
    body: b"PWP1" | flags:u8 | n_rows:u32 | n_titles:u32 | meta_len:u32
          meta: JSON {"cell": str, "h": [[row_id, title, source, evidence], ...]}
          offsets: int32 (n_rows + 1) | title ids: int32 or int64 | scores: float32 or float64

Pages published before zstd are the body zlib-compressed (no outer header); ``decode_page`` and
``row_count`` read both, so an older snapshot can still be rolled back to. zstd level 1 against
zlib level 1 on the 1M world's pages: 34 vs 131 us a page to compress, 25 vs 40 to decompress,
the same size (~3.4 KB). Narrow types are used only when they are exact: ids fit in int32, and the
float32 scores decode (rounded to 6 decimals, as ``TitleCard.to_dict`` serves them) to the very
same float64 values. ``decode_page(encode_page(cell, rows)) == (cell, rows)`` exactly; tests hold it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from pathways.types import CompactRows, Page, RowHeader

MAGIC = b"PWP1"
ZSTD_MAGIC = b"PWZ1"
_HEAD = struct.Struct("<4sBIII")
_OUTER = struct.Struct("<4sII")
_ZSTD = pa.Codec("zstd", compression_level=1)
_MAX_BODY = 16 << 20  # a page is at most 100 rows of 100 titles: far below; a larger size is not a page
_IDS_64, _SCORES_64 = 1, 2


class StoredPage(NamedTuple):
    """A page as the store holds it: ``cell`` it was built for and its ``rows``."""

    cell: str
    rows: CompactRows


def encode_page(cell: str, rows: CompactRows | Page) -> bytes:
    """``rows`` (or a ``Page``'s rows) and the cell, as compact bytes (see the module docstring)."""
    compact = rows.compact_rows() if isinstance(rows, Page) else rows
    ids, scores = compact.title_ids, compact.scores
    flags = 0
    if len(ids) and (ids.max() > np.iinfo(np.int32).max or ids.min() < np.iinfo(np.int32).min):
        flags |= _IDS_64
    narrow = scores.astype(np.float32)
    if not np.array_equal(np.round(narrow.astype(np.float64), 6), scores):
        flags |= _SCORES_64
    return encode_prepared(
        cell, [header_json(h) for h in compact.headers], compact.offsets, flags,
        ids.astype("<i8" if flags & _IDS_64 else "<i4"),
        scores.astype("<f8") if flags & _SCORES_64 else narrow.astype("<f4"),
    )


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # json.dumps builds a new encoder per call for non-default options


def header_json(header: RowHeader) -> str:
    """One row header as ``encode_page``'s metadata lists it (a compact JSON array)."""
    return _COMPACT_JSON.encode(list(header))


def wide_flags(ids_64: bool, scores_64: bool) -> int:
    """The flags byte: which of ids and scores are stored wide (int64, float64)."""
    return (_IDS_64 if ids_64 else 0) | (_SCORES_64 if scores_64 else 0)


def encode_prepared(cell: str, headers_json: Sequence[str], offsets: np.ndarray, flags: int, ids: np.ndarray,
                    scores: np.ndarray) -> bytes:
    """``encode_page``'s bytes from parts a caller has prepared (a block of pages at once): the
    headers as ``header_json`` strings, ``ids`` and ``scores`` already in the little-endian types
    ``flags`` names (int32/int64, float32/float64; narrow only where exact, as ``encode_page`` decides)."""
    return encode_raw(cell, headers_json, flags, len(ids), offsets.astype("<i4").tobytes(), ids.tobytes(),
                      scores.tobytes())


def encode_raw(cell: str, headers_json: Sequence[str], flags: int, n_titles: int, offsets: bytes, ids: bytes,
               scores: bytes) -> bytes:
    """``encode_prepared`` of arrays already turned into bytes (``offsets`` int32, ``ids`` and
    ``scores`` as ``flags`` names them, ``n_titles`` each): a block of pages converts its arrays once
    and slices each page's bytes, with no numpy call per page."""
    meta = ('{"cell":' + json.dumps(cell) + ',"h":[' + ",".join(headers_json) + "]}").encode()
    body = b"".join((_HEAD.pack(MAGIC, flags, len(headers_json), n_titles, len(meta)), meta, offsets, ids, scores))
    packed: bytes = _ZSTD.compress(body, asbytes=True)
    return _OUTER.pack(ZSTD_MAGIC, len(headers_json), len(body)) + packed


def row_count(blob: bytes) -> int:
    """How many rows the page of ``encode_page``'s bytes holds (reads only its header)."""
    try:
        if blob[:4] == ZSTD_MAGIC:
            return int(_OUTER.unpack_from(blob)[1])
        head = zlib.decompressobj().decompress(blob, _HEAD.size)  # a page published before zstd
        magic, _, n_rows, _, _ = _HEAD.unpack(head)
    except (zlib.error, struct.error) as exc:
        raise ValueError(f"not a stored page: {exc}") from None
    if magic != MAGIC:
        raise ValueError(f"not a stored page (magic {magic!r})")
    return int(n_rows)


def _body(blob: bytes) -> bytes:
    """The uncompressed body of a page (zstd, or zlib for pages published before it)."""
    if blob[:4] != ZSTD_MAGIC:
        return zlib.decompress(blob)
    _, _, size = _OUTER.unpack_from(blob)
    if size > _MAX_BODY:
        raise ValueError(f"not a stored page: a body of {size} bytes")
    body: bytes = _ZSTD.decompress(memoryview(blob)[_OUTER.size :], decompressed_size=size, asbytes=True)
    return body


def decode_page(blob: bytes) -> StoredPage:
    """The ``StoredPage`` of ``encode_page``'s bytes; ValueError if they are not one."""
    try:
        body = _body(blob)
        magic, flags, n_rows, n_titles, meta_len = _HEAD.unpack_from(body)
    except (zlib.error, struct.error, OSError, pa.ArrowException) as exc:
        raise ValueError(f"not a stored page: {exc}") from None
    if magic != MAGIC:
        raise ValueError(f"not a stored page (magic {magic!r})")
    at = _HEAD.size
    meta = json.loads(body[at : at + meta_len])
    at += meta_len
    offsets = np.frombuffer(body, "<i4", n_rows + 1, at).astype(np.int64)
    at += 4 * (n_rows + 1)
    id_type, score_type = ("<i8" if flags & _IDS_64 else "<i4"), ("<f8" if flags & _SCORES_64 else "<f4")
    ids = np.frombuffer(body, id_type, n_titles, at).astype(np.int64)
    at += np.dtype(id_type).itemsize * n_titles
    scores = np.round(np.frombuffer(body, score_type, n_titles, at).astype(np.float64), 6)
    if len(meta["h"]) != n_rows or int(offsets[-1]) != n_titles or (blob[:4] == ZSTD_MAGIC and row_count(blob) != n_rows):
        raise ValueError("stored page is inconsistent (rows or offsets)")
    headers = tuple(RowHeader(*h) for h in meta["h"])
    return StoredPage(str(meta["cell"]), CompactRows(headers, offsets, ids, scores))
