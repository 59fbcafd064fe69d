"""Per-arm features: what a policy sees for each artwork variant of a title shown to a profile.

The profile context is a vector of (noisy) affinities to named *slots*, ``context_names`` such as
``"genre:Comedy"``, ``"mood:dark"`` or ``"cast:*"``. A variant's theme maps to a slot by exact
name, else by ``"<kind>:*"`` (so every ``"cast:<name>"`` uses ``"cast:*"``); unmapped themes have
no slot. For variant a of title t with slot s and kind k, shown to a profile with context c::

    phi = [ onehot(s) * c  (S) | onehot(s)  (S) | onehot(k)  (K) ]       D = 2S + K

so a linear score is ``w_s * c_s + b_s + b_k``: per-slot response to affinity, slot and kind
main effects. Padded variants (titles with fewer than ``A_max``) are all-zero and masked.

The context the artwork policy is trained and served with is the profile's genre affinity, one
slot per genre (``artwork_context_names``); ``genre_contexts`` builds it, for the nightly job
(affinities as of each logged impression) and for serving (the online store's) alike.

Serving scores a whole page at once: an arm's features depend only on its (slot, kind) *code* and
the context, so ``code_features(context)`` (C, D) holds every code's features for one profile and
``layouts`` groups titles whose arms have the same codes; a page needs one policy call over its
distinct layouts (``bandits.serving``), never per-title features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

KINDS: tuple[str, ...] = ("genre", "cast", "mood")
NO_SLOT = -1
MAX_DENSE_TITLE_ID = 1 << 22  # title ids up to this are looked up in a dense array (4 bytes each), else searched


def artwork_context_names(genres: Sequence[str]) -> tuple[str, ...]:
    """The artwork policy's context layout: the profile's genre affinity, one slot ``genre:<name>`` per genre."""
    return tuple(f"genre:{g}" for g in genres)


def genre_contexts(affinities: Sequence[Any], genres: Sequence[str], context_names: Sequence[str]) -> np.ndarray:
    """Contexts float32 (n, S) in the ``context_names`` layout from n profiles' genre affinities.

    ``affinities[i]`` is a (G,) vector in ``genres`` order (the feature store's ``genre_affinity``),
    or None / NaN when the profile has none. A missing or misshapen affinity gives the all-zero
    context (the average member: the policy still picks by theme); slots naming no genre stay 0.
    """
    slot = {name: i for i, name in enumerate(context_names)}
    cols = np.array([slot.get(f"genre:{g}", NO_SLOT) for g in genres], dtype=np.int64)
    keep = cols != NO_SLOT
    out = np.zeros((len(affinities), len(context_names)), np.float32)
    for i, a in enumerate(affinities):
        if a is None or (isinstance(a, float) and np.isnan(a)) or len(a) != len(cols):
            continue
        out[i, cols[keep]] = np.asarray(a, np.float32)[keep]
    return out


def contexts_in_blocks(affinities_of: Callable[[int, int], Sequence[Any]], n: int, genres: Sequence[str],
                       context_names: Sequence[str], block_rows: int) -> np.ndarray:
    """``genre_contexts`` of ``n`` rows whose affinities ``affinities_of(lo, hi)`` gives for rows
    [lo, hi), asked ``block_rows`` rows at a time: a point-in-time join is row by row, so the
    contexts are the same as in one call, and only one block's affinities (Python objects, ~0.5 kB
    a row) are in memory at once. Shape (n, S) float32."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    out = np.zeros((n, len(context_names)), np.float32)
    for lo in range(0, n, block_rows):
        hi = min(lo + block_rows, n)
        out[lo:hi] = genre_contexts(affinities_of(lo, hi), genres, context_names)
    return out


@dataclass(frozen=True)
class ArmFeaturizer:
    """Static per-title arm layout. ``title_ids`` sorted int64 (T,); arm arrays (T, A_max)."""

    context_names: tuple[str, ...]
    title_ids: np.ndarray  # int64 (T,), sorted ascending
    arm_slot: np.ndarray  # int32 (T, A_max), NO_SLOT where none
    arm_kind: np.ndarray  # int32 (T, A_max), -1 where the kind is unknown
    arm_mask: np.ndarray  # bool (T, A_max)

    @classmethod
    def build(cls, context_names: tuple[str, ...] | list[str], title_ids: np.ndarray, artwork_themes) -> ArmFeaturizer:
        """From the catalog: ``artwork_themes[i]`` lists the variants of ``title_ids[i]``."""
        ids = np.asarray(title_ids, dtype=np.int64)
        if ids.ndim != 1 or len(ids) != len(artwork_themes):
            raise ValueError(f"title_ids {ids.shape} and artwork_themes ({len(artwork_themes)}) must align")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("title_ids: duplicates")
        if len(ids) == 0 or any(len(t) == 0 for t in artwork_themes):
            raise ValueError("artwork_themes: every title needs at least one variant")
        names = tuple(context_names)
        slot_of = {n: i for i, n in enumerate(names)}
        a_max = max(len(t) for t in artwork_themes)
        slot = np.full((len(ids), a_max), NO_SLOT, dtype=np.int32)
        kind = np.full((len(ids), a_max), -1, dtype=np.int32)
        mask = np.zeros((len(ids), a_max), dtype=bool)
        for i, themes in enumerate(artwork_themes):
            for a, theme in enumerate(themes):
                k = theme.split(":", 1)[0]
                slot[i, a] = slot_of.get(theme, slot_of.get(f"{k}:*", NO_SLOT))
                kind[i, a] = KINDS.index(k) if k in KINDS else -1
                mask[i, a] = True
        order = np.argsort(ids, kind="stable")
        return cls(names, ids[order], slot[order], kind[order], mask[order])

    @property
    def n_context(self) -> int:
        return len(self.context_names)

    @property
    def dim(self) -> int:
        """D, the length of one arm's feature vector."""
        return 2 * self.n_context + len(KINDS)

    @property
    def max_arms(self) -> int:
        return int(self.arm_mask.shape[1])

    def feature_names(self) -> list[str]:
        return [f"{n}*ctx" for n in self.context_names] + list(self.context_names) + [f"kind:{k}" for k in KINDS]

    def rows(self, title_ids: np.ndarray) -> np.ndarray:
        """Row of each title in the layout, int64 (n,); -1 for titles the featurizer does not know."""
        ids = np.asarray(title_ids, dtype=np.int64)
        dense = self._dense_rows
        if dense is not None:
            inside = (ids >= 0) & (ids < len(dense))
            return np.where(inside, dense[np.where(inside, ids, 0)], -1).astype(np.int64)
        pos = np.searchsorted(self.title_ids, ids)
        pos = np.minimum(pos, len(self.title_ids) - 1)
        return np.where(self.title_ids[pos] == ids, pos, -1)

    @cached_property
    def _dense_rows(self) -> np.ndarray | None:
        """title id -> row, int32 (max id + 1,), -1 for none; None when ids are too large for it."""
        top = int(self.title_ids.max(initial=-1))
        if not 0 <= top < MAX_DENSE_TITLE_ID or self.title_ids.min(initial=0) < 0:
            return None
        dense = np.full(top + 1, -1, np.int32)
        dense[self.title_ids] = np.arange(len(self.title_ids), dtype=np.int32)
        return dense

    @cached_property
    def layouts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Titles grouped by arm codes: (layout of each title int64 (T,), each layout's arm codes
        int64 (L, A_max), its variants int64 (L,)). Code ``(slot + 1) * (K + 1) + kind + 1`` indexes
        ``code_features``; padded arms (and arms with neither slot nor kind) are code 0, all zero."""
        codes = (self.arm_slot.astype(np.int64) + 1) * (len(KINDS) + 1) + self.arm_kind + 1
        codes = np.where(self.arm_mask, codes, 0)
        keys, layout = np.unique(np.c_[codes, self.arm_mask.sum(axis=1)], axis=0, return_inverse=True)
        return layout.reshape(-1), keys[:, :-1], keys[:, -1]

    @cached_property
    def _code_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """Slot and kind of each code, int64 (C,) each (-1: none)."""
        k = len(KINDS) + 1
        code = np.arange((self.n_context + 1) * k)
        return code // k - 1, code % k - 1

    def code_features(self, context: np.ndarray) -> np.ndarray:
        """Features float32 (C, D) of every arm code (``layouts``) for one context (S,): row
        ``layouts[1][l]`` of it equals ``transform(context, t)`` for every title t of layout l."""
        ctx = np.asarray(context, dtype=np.float32)
        if ctx.shape != (self.n_context,):
            raise ValueError(f"context: expected ({self.n_context},), got {ctx.shape}")
        slot, kind = self._code_slots
        s = self.n_context
        out = np.zeros((len(slot), self.dim), dtype=np.float32)
        has = np.nonzero(slot >= 0)[0]
        out[has, slot[has]] = ctx[slot[has]]
        out[has, s + slot[has]] = 1.0
        has = np.nonzero(kind >= 0)[0]
        out[has, 2 * s + kind[has]] = 1.0
        return out

    def n_arms(self, title_ids: np.ndarray) -> np.ndarray:
        """Variants per title, int32 (n,); 0 for unknown titles."""
        rows = self.rows(title_ids)
        return np.where(rows >= 0, self.arm_mask[rows].sum(axis=1), 0).astype(np.int32)

    def transform(self, context: np.ndarray, title_ids: np.ndarray) -> np.ndarray:
        """Arm features float32 (n, A_max, D) for contexts (n, S), or one context (S,) for all titles."""
        ctx = np.asarray(context, dtype=np.float32)
        rows = self.rows(title_ids)
        if np.any(rows < 0):
            raise ValueError(f"title_ids: unknown to the featurizer: {np.asarray(title_ids)[rows < 0][:5].tolist()}")
        if ctx.shape[-1] != self.n_context or ctx.ndim not in (1, 2):
            raise ValueError(f"context: expected (n, {self.n_context}) or ({self.n_context},), got {ctx.shape}")
        if ctx.ndim == 2 and len(ctx) != len(rows):
            raise ValueError(f"context has {len(ctx)} rows for {len(rows)} titles")
        s = self.n_context
        slot, kind, mask = self.arm_slot[rows], self.arm_kind[rows], self.arm_mask[rows]
        out = np.zeros((len(rows), self.max_arms, self.dim), dtype=np.float32)
        n_idx, a_idx = np.nonzero(slot >= 0)
        sl = slot[n_idx, a_idx]
        out[n_idx, a_idx, sl] = ctx[sl] if ctx.ndim == 1 else ctx[n_idx, sl]
        out[n_idx, a_idx, s + sl] = 1.0
        n_idx, a_idx = np.nonzero(kind >= 0)
        out[n_idx, a_idx, 2 * s + kind[n_idx, a_idx]] = 1.0
        out[~mask] = 0.0
        return out

    def transform_chosen(self, context: np.ndarray, title_ids: np.ndarray, arms: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Features of the chosen arm only, float32 (n, D); chunked so logs of any size fit in memory."""
        arms = np.asarray(arms, dtype=np.int64)
        out = np.empty((len(arms), self.dim), dtype=np.float32)
        for lo in range(0, len(arms), chunk):
            sl = slice(lo, lo + chunk)
            feats = self.transform(np.asarray(context)[sl], np.asarray(title_ids)[sl])
            out[sl] = feats[np.arange(len(feats)), arms[sl]]
        return out

    def save(self, path: Path) -> Path:
        np.savez(
            path,
            context_names=np.array(self.context_names, dtype=str),
            title_ids=self.title_ids,
            arm_slot=self.arm_slot,
            arm_kind=self.arm_kind,
            arm_mask=self.arm_mask,
        )
        return path

    @classmethod
    def load(cls, path: Path) -> ArmFeaturizer:
        with np.load(path, allow_pickle=False) as z:
            return cls(tuple(str(n) for n in z["context_names"]), z["title_ids"], z["arm_slot"], z["arm_kind"], z["arm_mask"])
