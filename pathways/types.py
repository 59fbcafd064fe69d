"""The types that travel between stages: one container per hand-off.

- ``ProfileContext``: who the page is for (region, maturity ceiling, history, cell).
- ``Candidates``: what a generator proposes (parallel arrays of title ids and scores, with the
  source's name and each title's evidence); rankers re-score it, rules filter it.
- ``Row`` / ``Page``: what is served. Pages are JSON-serializable via ``to_dict``/``from_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ProfileContext:
    """Everything a generator, ranker or rule needs to know about the profile.

    ``history`` holds title ids the profile interacted with, oldest first; ``finished`` those
    it watched to the end; ``in_progress`` maps title id -> fraction watched (0 < f < finished).
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

    def sorted(self) -> "Candidates":
        order = np.argsort(-self.scores, kind="stable")
        return replace(self, title_ids=self.title_ids[order], scores=self.scores[order])

    def top(self, k: int) -> "Candidates":
        return replace(self, title_ids=self.title_ids[:k], scores=self.scores[:k])

    def mask(self, keep: np.ndarray) -> "Candidates":
        return replace(self, title_ids=self.title_ids[keep], scores=self.scores[keep])

    def with_scores(self, scores: np.ndarray) -> "Candidates":
        return replace(self, scores=np.asarray(scores, dtype=np.float32)).sorted()

    @classmethod
    def empty(cls, source: str, evidence: str = "", key: str = "") -> "Candidates":
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
    def from_dict(cls, d: dict[str, Any]) -> "TitleCard":
        return cls(
            int(d["title_id"]),
            str(d["name"]),
            int(d["maturity_level"]),
            float(d.get("score", 0.0)),
            int(d.get("artwork_id", 0)),
            float(d.get("artwork_propensity", 1.0)),
        )


@dataclass(frozen=True)
class Row:
    """A row of the page: its title, the source that produced it and why."""

    row_id: str
    title: str
    source: str
    evidence: str
    titles: tuple[TitleCard, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "title": self.title,
            "source": self.source,
            "evidence": self.evidence,
            "titles": [t.to_dict() for t in self.titles],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Row":
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Page":
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
