"""One profile's published page as compact bytes: the page store's value (``encode_page``/``decode_page``).

What serving needs of a page, and nothing else: the A/B cell it was built for and its rows as
``CompactRows`` (headers, title ids, scores); names, maturity and artwork come from the catalog.
Layout (little-endian)::

    b"PWP1" | flags:u8 | n_rows:u32 | n_titles:u32 | meta_len:u32
    meta: JSON {"cell": str, "h": [[row_id, title, source, evidence], ...]}
    offsets: int32 (n_rows + 1) | title ids: int32 or int64 | scores: float32 or float64

then the whole body zlib-compressed (level 1). Narrow types are used only when they are exact:
ids fit in int32, and the float32 scores decode (rounded to 6 decimals, as ``TitleCard.to_dict``
serves them) to the very same float64 values. A 40 x 40 page is ~6-9 KB (its JSON is ~200 KB).
``decode_page(encode_page(cell, rows)) == (cell, rows)`` exactly; tests hold it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from pathways.types import CompactRows, Page, RowHeader

MAGIC = b"PWP1"
_HEAD = struct.Struct("<4sBIII")
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


def header_json(header: RowHeader) -> str:
    """One row header as ``encode_page``'s metadata lists it (a compact JSON array)."""
    return json.dumps(list(header), separators=(",", ":"))


def wide_flags(ids_64: bool, scores_64: bool) -> int:
    """The flags byte: which of ids and scores are stored wide (int64, float64)."""
    return (_IDS_64 if ids_64 else 0) | (_SCORES_64 if scores_64 else 0)


def encode_prepared(cell: str, headers_json: Sequence[str], offsets: np.ndarray, flags: int, ids: np.ndarray,
                    scores: np.ndarray) -> bytes:
    """``encode_page``'s bytes from parts a caller has prepared (a block of pages at once): the
    headers as ``header_json`` strings, ``ids`` and ``scores`` already in the little-endian types
    ``flags`` names (int32/int64, float32/float64; narrow only where exact, as ``encode_page`` decides)."""
    meta = ('{"cell":' + json.dumps(cell) + ',"h":[' + ",".join(headers_json) + "]}").encode()
    body = b"".join((
        _HEAD.pack(MAGIC, flags, len(headers_json), len(ids), len(meta)),
        meta,
        offsets.astype("<i4").tobytes(),
        ids.tobytes(),
        scores.tobytes(),
    ))
    return zlib.compress(body, 1)


def row_count(blob: bytes) -> int:
    """How many rows the page of ``encode_page``'s bytes holds (decompresses only its header)."""
    head = zlib.decompressobj().decompress(blob, _HEAD.size)
    magic, _, n_rows, _, _ = _HEAD.unpack(head)
    if magic != MAGIC:
        raise ValueError(f"not a stored page (magic {magic!r})")
    return int(n_rows)


def decode_page(blob: bytes) -> StoredPage:
    """The ``StoredPage`` of ``encode_page``'s bytes; ValueError if they are not one."""
    try:
        body = zlib.decompress(blob)
        magic, flags, n_rows, n_titles, meta_len = _HEAD.unpack_from(body)
    except (zlib.error, struct.error) as exc:
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
    if len(meta["h"]) != n_rows or int(offsets[-1]) != n_titles:
        raise ValueError("stored page is inconsistent (rows or offsets)")
    headers = tuple(RowHeader(*h) for h in meta["h"])
    return StoredPage(str(meta["cell"]), CompactRows(headers, offsets, ids, scores))
