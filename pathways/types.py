"""The types that travel between stages: one container per hand-off.

- ``ProfileContext``: who the page is for (region, maturity ceiling, history, cell).
- ``Candidates``: what a generator proposes (parallel arrays of title ids and scores, with the
  source's name and each title's evidence); rankers re-score it, rules filter it.
- ``Row`` / ``Page`` / ``TitleCard``: what is served. Pages are JSON-serializable via
  ``to_dict``/``from_dict``; ``CompactRows`` is a page's rows as parallel arrays (``Page.compact_rows``),
  the form serving keeps in memory and edits per request.
- ``ArtworkChoice``: the artwork variant shown per title with its propensity (bandits, serving).
- ``ROW_SOURCES``: the names of the row sources a page can hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from pathways.catalog import Catalog

# Every row source a page can hold: the candidate generators (``candidates/``), the learned top
# row, the retrieval models' rows and serving's catalog rung. Settings that name sources
# (``PageConfig.pinned_sources``) are checked against it.
ROW_SOURCES: frozenset[str] = frozenset({
    "continue_watching", "top_picks", "als", "two_tower", "sasrec", "because_you_watched",
    "genre", "new_releases", "trending", "popular", "catalog",
})


@dataclass(frozen=True)
class ProfileContext:
    """Everything a generator, ranker or rule needs to know about the profile.

    ``history`` holds title ids the profile interacted with, oldest first; ``finished`` those
    it watched to the end; ``in_progress`` maps title id -> fraction watched (0 < f < finished).
    The nightly job fills it from the lake; serving uses the snapshot's record of the profile (no
    history) with ``finished`` from the playback state, and ``known=False`` for a profile never seen.
    """

    profile_id: int
    region: str
    max_maturity_level: int
    is_kids: bool = False
    account_id: int | None = None
    device: str | None = None
    cell: str = "control"
    history: tuple[int, ...] = ()
    finished: frozenset[int] = frozenset()
    in_progress: dict[int, float] = field(default_factory=dict)
    in_progress_ts: dict[int, float] = field(default_factory=dict)  # title -> last seen (epoch s)
    known: bool = True  # False for a profile never seen


@dataclass(frozen=True)
class Candidates:
    """Scored titles from one source. Arrays are parallel, shape (n,), sorted by score desc.

    ``evidence`` is the row-level reason ("Because you watched Heat"); ``title_evidence``
    optionally gives a per-title reason (the anchor title id for item-similarity sources).
    """

    source: str
    title_ids: np.ndarray  # int64, (n,)
    scores: np.ndarray  # float32, (n,); higher is better
    evidence: str = ""
    key: str = ""  # distinguishes several rows of one source (e.g. the anchor or genre)

    def __post_init__(self) -> None:
        ids = np.asarray(self.title_ids, dtype=np.int64)
        scores = np.asarray(self.scores, dtype=np.float32)
        if ids.shape != scores.shape or ids.ndim != 1:
            raise ValueError(f"title_ids {ids.shape} and scores {scores.shape} must be equal 1-d")
        object.__setattr__(self, "title_ids", ids)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return int(self.title_ids.shape[0])

    @property
    def row_id(self) -> str:
        return f"{self.source}:{self.key}" if self.key else self.source

    def sorted(self) -> Candidates:
        order = np.argsort(-self.scores, kind="stable")
        return replace(self, title_ids=self.title_ids[order], scores=self.scores[order])

    def top(self, k: int) -> Candidates:
        return replace(self, title_ids=self.title_ids[:k], scores=self.scores[:k])

    def mask(self, keep: np.ndarray) -> Candidates:
        return replace(self, title_ids=self.title_ids[keep], scores=self.scores[keep])

    def with_scores(self, scores: np.ndarray) -> Candidates:
        return replace(self, scores=np.asarray(scores, dtype=np.float32)).sorted()

    @classmethod
    def empty(cls, source: str, evidence: str = "", key: str = "") -> Candidates:
        return cls(source, np.zeros(0, np.int64), np.zeros(0, np.float32), evidence, key)


@dataclass(frozen=True)
class TitleCard:
    """One title as shown in a row."""

    title_id: int
    name: str
    maturity_level: int
    score: float = 0.0
    artwork_id: int = 0
    artwork_propensity: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "title_id": self.title_id,
            "name": self.name,
            "maturity_level": self.maturity_level,
            "score": round(float(self.score), 6),
            "artwork_id": self.artwork_id,
            "artwork_propensity": round(float(self.artwork_propensity), 6),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TitleCard:
        return cls(
            int(d["title_id"]),
            str(d["name"]),
            int(d["maturity_level"]),
            float(d.get("score", 0.0)),
            int(d.get("artwork_id", 0)),
            float(d.get("artwork_propensity", 1.0)),
        )


class RowHeader(NamedTuple):
    """A row without its titles: what identifies and labels it."""

    row_id: str
    title: str
    source: str
    evidence: str


@dataclass(frozen=True)
class Row:
    """A row of the page: its title, the source that produced it and why."""

    row_id: str
    title: str
    source: str
    evidence: str
    titles: tuple[TitleCard, ...]

    @property
    def header(self) -> RowHeader:
        return RowHeader(self.row_id, self.title, self.source, self.evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "title": self.title,
            "source": self.source,
            "evidence": self.evidence,
            "titles": [t.to_dict() for t in self.titles],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        return cls(
            str(d["row_id"]),
            str(d["title"]),
            str(d["source"]),
            str(d["evidence"]),
            tuple(TitleCard.from_dict(t) for t in d["titles"]),
        )


@dataclass(frozen=True)
class Page:
    """A whole home page. ``personalized`` is False for fallback pages, with ``reason`` saying why."""

    profile_id: int | None
    region: str
    max_maturity_level: int
    rows: tuple[Row, ...]
    personalized: bool
    reason: str | None = None  # why not personalized (None when personalized)
    cell: str | None = None
    snapshot: str | None = None
    fallback_rung: str | None = None  # "cohort" (region, maturity) or "global"

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile_id": self.profile_id,
            "region": self.region,
            "max_maturity_level": self.max_maturity_level,
            "personalized": self.personalized,
            "reason": self.reason,
            "cell": self.cell,
            "snapshot": self.snapshot,
            "fallback_rung": self.fallback_rung,
            "rows": [r.to_dict() for r in self.rows],
        }

    def compact_rows(self) -> CompactRows:
        """The rows as parallel arrays (scores as ``to_dict`` serves them)."""
        return CompactRows.from_rows(self.rows)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Page:
        return cls(
            profile_id=None if d.get("profile_id") is None else int(d["profile_id"]),
            region=str(d["region"]),
            max_maturity_level=int(d["max_maturity_level"]),
            rows=tuple(Row.from_dict(r) for r in d["rows"]),
            personalized=bool(d["personalized"]),
            reason=d.get("reason"),
            cell=d.get("cell"),
            snapshot=d.get("snapshot"),
            fallback_rung=d.get("fallback_rung"),
        )


@dataclass(frozen=True)
class CompactRows:
    """A page's rows as parallel arrays: row r holds ``title_ids[offsets[r]:offsets[r + 1]]``.

    What serving keeps per page and edits per request (a 40 x 40 page is ~13 KB here, several
    hundred KB as ``Row``/``TitleCard`` objects). Titles' names, maturity and artwork come from
    the catalog when rows are rendered (``to_rows``, or serving's pre-encoded JSON fragments).
    ``scores`` are float64, rounded to 6 decimals as ``TitleCard.to_dict`` serves them.
    """

    headers: tuple[RowHeader, ...]
    offsets: np.ndarray  # int64 (R + 1,)
    title_ids: np.ndarray  # int64 (n,)
    scores: np.ndarray  # float64 (n,)

    @classmethod
    def empty(cls) -> CompactRows:
        return cls((), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @classmethod
    def build(cls, headers: Sequence[RowHeader], ids: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> CompactRows:
        """From one header, one title id array and one score array per row."""
        if not headers:
            return cls.empty()
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat_scores = np.round(np.concatenate(scores).astype(np.float64), 6)  # as served (TitleCard.to_dict)
        return cls(tuple(headers), offsets, np.concatenate(ids).astype(np.int64), flat_scores)

    @classmethod
    def from_json(cls, page_json: str) -> CompactRows:
        """From a stored ``Page.to_dict()`` JSON text (only the rows are kept)."""
        return cls.from_dicts(json.loads(page_json)["rows"])

    @classmethod
    def from_dicts(cls, rows: list[dict[str, Any]]) -> CompactRows:
        headers = [RowHeader(str(r["row_id"]), str(r["title"]), str(r["source"]), str(r["evidence"])) for r in rows]
        ids = [np.array([t["title_id"] for t in r["titles"]], dtype=np.int64) for r in rows]
        scores = [np.array([t.get("score", 0.0) for t in r["titles"]], dtype=np.float64) for r in rows]
        return cls.build(headers, ids, scores)

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> CompactRows:
        ids = [np.array([t.title_id for t in r.titles], dtype=np.int64) for r in rows]
        scores = [np.array([t.score for t in r.titles], dtype=np.float64) for r in rows]
        return cls.build([r.header for r in rows], ids, scores)

    def __len__(self) -> int:
        return len(self.headers)

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Title ids and scores of row ``r``."""
        a, b = int(self.offsets[r]), int(self.offsets[r + 1])
        return self.title_ids[a:b], self.scores[a:b]

    def ids_per_row(self) -> list[np.ndarray]:
        """The title ids of every row, in order (views, no copies)."""
        return [self.title_ids[int(a) : int(b)] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def positions(self) -> np.ndarray:
        """Column of each title within its row, int64 (n,)."""
        starts = np.repeat(self.offsets[:-1], np.diff(self.offsets))
        positions: np.ndarray = np.arange(len(self.title_ids), dtype=np.int64) - starts
        return positions

    def to_rows(self, catalog: Catalog, artwork_ids: np.ndarray, propensities: np.ndarray) -> tuple[Row, ...]:
        """As ``Row`` objects (names and maturity from ``catalog``); every title must be in it."""
        out = []
        for r, h in enumerate(self.headers):
            a, b = int(self.offsets[r]), int(self.offsets[r + 1])
            cards = tuple(
                TitleCard(int(t), catalog.name(int(t)), int(catalog.maturity[catalog.index[int(t)]]), float(s), int(art), float(p))
                for t, s, art, p in zip(self.title_ids[a:b], self.scores[a:b], artwork_ids[a:b], propensities[a:b])
            )
            out.append(Row(h.row_id, h.title, h.source, h.evidence, cards))
        return tuple(out)


@dataclass(frozen=True)
class ArtworkChoice:
    """The artwork shown for each title of a page: parallel arrays (n,).

    ``arms`` index each title's variants (what the policy chose and the log records);
    ``artwork_ids`` are the catalog's ids of those variants, once serving has mapped them (None
    before). ``propensities`` are the probabilities the policy chose them with (1 for defaults);
    ``fallback_reason`` says why the default artwork was served instead of the policy's.
    """

    arms: np.ndarray  # int64 (n,)
    propensities: np.ndarray  # float64 (n,), in (0, 1]
    policy_version: str
    fallback_reason: str | None = None
    artwork_ids: np.ndarray | None = None  # int64 (n,)
