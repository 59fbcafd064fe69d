"""(user, candidate) features for the ranker of the top row, all as of each user's last event.

Given each generator's full-catalog scores for a batch of users and the candidates
(``training.recommender.union_candidates`` of each generator's top list, (n_users, budget), -1 padded):

- ``CandidateFeaturizer`` (fit on the train interactions) -> (n_users, budget, n_features):
  per generator: raw score, z-score within the user's catalog, log rank in the catalog; per item,
  as of the user's last timestamp t_u (never later, so features are point-in-time): log count of
  interactions up to t_u, in the two windows before t_u, log days since the item's first and last
  interaction, a flag when the item had none yet; per user: log history length, log days spanned;
  and, when item features (e.g. genres) are given, the cosine of the item's features with the
  mean of the user's last 50 items'.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from training.recommender import Interactions

DAY = 86_400.0


class CandidateFeaturizer:
    """Point-in-time features of (user, candidate) pairs computed from train interactions."""

    def __init__(self, train: Interactions, item_features: np.ndarray | None = None) -> None:
        if item_features is not None and item_features.shape[0] != train.n_items:
            raise ValueError(f"item_features has {item_features.shape[0]} rows, expected {train.n_items}")
        order = np.lexsort((train.timestamps, train.items))
        self._items_sorted = train.items[order]
        self._ts_sorted = train.timestamps[order].astype(np.int64)
        self._item_start = np.searchsorted(self._items_sorted, np.arange(train.n_items + 1))
        self.n_items = train.n_items
        self._set_users(train)
        span = float(train.timestamps.max() - train.timestamps.min()) if len(train) else DAY
        self.windows = (max(span / 50.0, DAY / 24), max(span / 10.0, DAY / 24))  # seconds
        feats = None
        if item_features is not None:
            feats = np.asarray(item_features, dtype=np.float32)
            feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-8)
        self.item_features = feats

    def _set_users(self, train: Interactions) -> None:
        """The user side: each user's sequence, last timestamp and span in days."""
        self.sequences = train.sequences()
        last_ts = np.full(train.n_users, train.timestamps.min() if len(train) else 0, dtype=np.int64)
        first_ts = np.full(train.n_users, np.iinfo(np.int64).max, dtype=np.int64)
        np.maximum.at(last_ts, train.users, train.timestamps)
        np.minimum.at(first_ts, train.users, train.timestamps)
        self.user_last_ts = last_ts
        self.user_span_days = np.where(first_ts <= last_ts, (last_ts - np.minimum(first_ts, last_ts)) / DAY, 0.0)

    def with_users(self, data: Interactions) -> CandidateFeaturizer:
        """A copy for ``data``'s users (same catalog): their user side, the fitted item side (item
        counts over time stay those of the fit's interactions)."""
        if data.n_items != self.n_items:
            raise ValueError(f"data has n_items={data.n_items}, the featurizer has {self.n_items}")
        out = copy.copy(self)
        out._set_users(data)
        return out

    @cached_property
    def _item_ts_keys(self) -> tuple[int, np.ndarray] | None:
        """(base, keys): one int64 key per train interaction, ``item << 32 | (ts - base)``, in the
        (item, ts) order, so one binary search counts an item's interactions up to a moment (a
        128-user block's 64k searches: 8 ms against 13 ms item range by item range; None:
        timestamps spanning 2**32 seconds or more, searched item by item instead). Not pickled."""
        ts = self._ts_sorted
        base = int(ts.min()) - 1 if len(ts) else 0
        if len(ts) and int(ts.max()) - base >= 2**32 - 1:
            return None
        return base, (self._items_sorted.astype(np.int64) << np.int64(32)) | (ts - base)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state.pop("_item_ts_keys", None)  # derived from the sorted arrays: rebuilt on first use
        return state

    def _counts_upto(self, items: np.ndarray, moments: Sequence[np.ndarray]) -> list[np.ndarray]:
        """For each (n_users,) array of ``moments``: (n_users, C) interactions of each candidate at or
        before the row's moment. The later arrays must follow the first in order (e.g. ``t - w``):
        their (item, moment) needles are searched in the first's sort (searchsorted is exact in any
        needle order; sorted needles walk the keys in order, 6x faster)."""
        keyed = self._item_ts_keys
        if keyed is None:
            return [self._counts_upto_by_item(items, t) for t in moments]
        base, keys = keyed  # one search of (item, moment) among the (item, ts) keys
        lo = self._item_start[items]
        order: np.ndarray | None = None
        counts = []
        for t_user in moments:
            moment = np.clip(np.asarray(t_user, np.int64) - base, 0, 2**32 - 1)
            needles = ((items.astype(np.int64) << np.int64(32)) | moment[:, None]).ravel()
            order = np.argsort(needles) if order is None else order
            found = np.empty(len(needles), np.int64)
            found[order] = np.searchsorted(keys, needles[order], side="right")
            counts.append((found.reshape(items.shape) - lo).astype(np.float64))
        return counts

    def _counts_upto_by_item(self, items: np.ndarray, t_user: np.ndarray) -> np.ndarray:
        """``_counts_upto`` of one moment array, item range by item range (timestamps spanning 2**32 s)."""
        lo = self._item_start[items]
        hi = self._item_start[items + 1]
        # vectorised per-item searchsorted: binary search on the global (item, ts)-sorted array
        left, right = lo.copy(), hi.copy()
        target = np.broadcast_to(t_user[:, None], items.shape)
        while True:
            active = left < right
            if not active.any():
                break
            mid = (left + right) // 2
            go_right = active & (self._ts_sorted[np.minimum(mid, len(self._ts_sorted) - 1)] <= target)
            left = np.where(go_right, mid + 1, left)
            right = np.where(active & ~go_right, mid, right)
        return (left - lo).astype(np.float64)

    def features(self, users: np.ndarray, candidates: np.ndarray, scores: Sequence[np.ndarray | RankedScores]) -> np.ndarray:
        """(n_users, C, n_features) float32 for ``candidates`` (n_users, C; -1 = padding); ``scores``:
        each generator's full-catalog scores for ``users``, sorted already or not."""
        valid = candidates >= 0
        cand = np.where(valid, candidates, 0)
        cols: list[np.ndarray] = []
        for ranked in scores:
            if not isinstance(ranked, RankedScores):
                ranked = RankedScores(ranked)
            picked = np.take_along_axis(ranked.scores, cand, axis=1)
            cols += [picked, (picked - ranked.mean) / ranked.std, np.log1p(ranked.ranks(cand, picked))]
        t_u = self.user_last_ts[users]
        total, *earlier = self._counts_upto(cand, [t_u] + [(t_u - w).astype(np.int64) for w in self.windows])
        cols.append(np.log1p(total))
        for counts in earlier:
            cols.append(np.log1p(total - counts))
        first = self._ts_sorted[np.minimum(self._item_start[cand], len(self._ts_sorted) - 1)]
        has_any = self._item_start[cand + 1] > self._item_start[cand]
        seen_yet = has_any & (first <= t_u[:, None])
        last_idx = np.maximum(self._item_start[cand] + total.astype(np.int64) - 1, 0)
        last = self._ts_sorted[np.minimum(last_idx, len(self._ts_sorted) - 1)]
        cols.append(np.where(seen_yet, np.log1p(np.maximum(t_u[:, None] - first, 0) / DAY), -1.0))
        cols.append(np.where(seen_yet, np.log1p(np.maximum(t_u[:, None] - last, 0) / DAY), -1.0))
        cols.append(seen_yet.astype(np.float64))
        n_hist = np.array([len(self.sequences[u]) for u in users], dtype=np.float64)
        cols.append(np.broadcast_to(np.log1p(n_hist)[:, None], cand.shape))
        cols.append(np.broadcast_to(np.log1p(self.user_span_days[users])[:, None], cand.shape))
        if self.item_features is not None:
            profile = np.stack(
                [self.item_features[self.sequences[u][-50:]].mean(0) if len(self.sequences[u]) else
                 np.zeros(self.item_features.shape[1], np.float32) for u in users]
            )
            profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-8)
            cols.append(np.einsum("uf,ucf->uc", profile, self.item_features[cand]))
        out = np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=-1)
        out[~valid] = 0.0
        return out


def _rank_of(scores: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Rank (0 = best) of each candidate in its row of ``scores`` (n_users, n_items): its place in
    the row's stable descending order (ties by item index, NaN last)."""
    if scores.dtype != np.float32:
        order = np.argsort(-scores, axis=1, kind="stable")
        inverse = np.empty_like(order)
        np.put_along_axis(inverse, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
        return np.take_along_axis(inverse, cand, axis=1)
    return RankedScores(scores).ranks(cand)


_LOW_31 = np.int32(0x7FFFFFFF)
_NAN_HIGH = np.uint32(0xFFFFFFFF)  # after every number
_ZERO_HIGH = np.uint32(0x7FFFFFFF)  # 0.0's sortable bits: the value most rows of EASE, ALS, item-kNN hold
_INF_HIGH = np.uint32(0x007FFFFF)  # +inf's: the smallest (best) of all
_ROWS_AT_ONCE = 8
_MAX_TIED_VALUES = 8  # a dense row with more tied values among its candidates ranks them by a full sort


def _high(values: np.ndarray) -> np.ndarray:
    """Each float32 value's bits as a uint32 whose ascending order is the values' descending order
    (-0.0 and 0.0 the same, NaN last): >= 0 all but the sign bit flipped, < 0 as they are."""
    bits = np.add(values, np.float32(0.0)).view(np.int32)  # -0.0 + 0.0 is +0.0 (a new array)
    flip = bits >> 31  # -1 where negative, else 0
    np.invert(flip, out=flip)
    np.bitwise_and(flip, _LOW_31, out=flip)
    np.bitwise_xor(bits, flip, out=bits)
    high = bits.view(np.uint32)
    nan = np.isnan(values)
    if nan.any():
        high[nan] = _NAN_HIGH
    return high


def _keys(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Unique uint64 keys of (float32 value, item) whose order is the values' descending order, ties
    by item: ``_high`` in the high 32 bits, the item in the low 32."""
    return _keys_of_high(_high(values), items)


def _keys_of_high(high: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``_keys`` of values whose ``_high`` bits are ``high`` (computed already)."""
    return (high.astype(np.uint64) << np.uint64(32)) | np.asarray(items).astype(np.uint64)


def _finite(keys: np.ndarray) -> np.ndarray:
    """Which keys' values are finite (the high 32 bits decoded back to float32)."""
    bits = (keys >> np.uint64(32)).astype(np.uint32)
    bits ^= np.where(bits >> np.uint32(31) == 0, np.uint32(_LOW_31), np.uint32(0))
    return np.isfinite(bits.view(np.float32))


def _run_value(high: np.ndarray) -> tuple[np.uint32, np.ndarray] | None:
    """(value, where) of the value at least a quarter of the row holds, if one does: 0.0 is tried
    first, then the most repeated of 16 evenly spaced values (a few microseconds either way)."""
    same = high == _ZERO_HIGH
    if 4 * int(np.count_nonzero(same)) >= len(high) > 0:
        return _ZERO_HIGH, same
    sample = np.sort(high[:: max(1, len(high) // 16)])
    repeated = sample[1:][sample[1:] == sample[:-1]]
    if not len(repeated):
        return None
    values, counts = np.unique(repeated, return_counts=True)
    value = values[counts.argmax()]
    same = high == value
    return (value, same) if 4 * int(np.count_nonzero(same)) >= len(high) else None


class _SortedRow:
    """One user's scores in their descending order (ties by item), kept in the cheapest exact form:

    - a run row (one value on at least a quarter of the titles: EASE, ALS and item-kNN score 84-98%
      of titles exactly 0): the other titles' ``_keys`` sorted; the run's titles stand in item order
      between them at ``at``, so they are never sorted or stored;
    - a dense row (SASRec, two-tower): the ``_high`` values sorted as uint32 (half a uint64 sort);
      a candidate's rank is the count of smaller values plus the titles before it with its value.
    """

    __slots__ = ("values", "high", "order", "keys", "rest", "run", "n_run", "at")

    def __init__(self, values: np.ndarray, high: np.ndarray | None = None) -> None:
        """``high``: ``_high(values)``, when already computed."""
        self.values = values
        high = _high(values) if high is None else high
        found = _run_value(high)
        self.keys = np.empty(0, np.uint64)  # a dense row: only once its ties need the full sort
        if found is None:
            self.high, self.order, self.run = high, np.sort(high), None
            return
        self.run, same = np.uint64(found[0]), found[1]
        self.rest = np.flatnonzero(~same)
        self.keys = _keys_of_high(high[self.rest], self.rest)
        self.keys.sort()
        self.n_run = len(values) - len(self.rest)
        self.at = int(np.searchsorted(self.keys, self.run << np.uint64(32)))

    def n_inf(self) -> int:
        """How many titles score +inf (they come first, and are never in a top list)."""
        if self.run is None:
            return int(np.searchsorted(self.order, _INF_HIGH, side="right"))
        below = int(np.searchsorted(self.keys, np.uint64(int(_INF_HIGH) + 1) << np.uint64(32)))
        return below + (self.n_run if self.run == _INF_HIGH else 0)

    def _full_keys(self) -> np.ndarray:
        """Every title's key, sorted (a dense row whose candidates tie on many values)."""
        if len(self.keys) < len(self.values):
            self.keys = _keys(self.values, np.arange(len(self.values)))
            self.keys.sort()
        return self.keys

    def ranks(self, wanted: np.ndarray, cand: np.ndarray, out: np.ndarray) -> None:
        """``out`` = the places of ``cand`` (whose keys are ``wanted``) in the row's order."""
        if self.run is not None:
            out[:] = np.searchsorted(self.keys, wanted)  # among the other titles
            high = wanted >> np.uint64(32)
            out[high > self.run] += self.n_run
            in_run = high == self.run
            c = cand[in_run]
            out[in_run] = self.at + c - np.searchsorted(self.rest, c)  # the run's titles before c
            return
        if len(self.keys):
            out[:] = np.searchsorted(self.keys, wanted)
            return
        h = (wanted >> np.uint64(32)).astype(np.uint32)
        out[:] = np.searchsorted(self.order, h)  # titles with a smaller value
        n = len(self.order)
        tied = (out + 1 < n) & (self.order[np.minimum(out + 1, n - 1)] == h)
        if not tied.any():
            return
        values = np.unique(h[tied])
        if len(values) > _MAX_TIED_VALUES:
            out[:] = np.searchsorted(self._full_keys(), wanted)
            return
        for v in values:  # + the titles before c with c's value
            at = np.flatnonzero(h == v)
            out[at] += np.searchsorted(np.flatnonzero(self.high == v), cand[at])

    def _run_items(self, need: int) -> np.ndarray:
        """The run's first ``need`` titles (``need`` <= ``n_run``): the first titles not in ``rest``,
        all below ``need + len(rest)``, found without a pass over the row."""
        limit = min(need + len(self.rest), len(self.values))
        free = np.ones(limit, bool)
        free[self.rest[: int(np.searchsorted(self.rest, limit))]] = False
        return np.flatnonzero(free)[:need]

    def window(self, width: int) -> np.ndarray:
        """The first ``width`` keys of the row's order."""
        if self.run is not None:
            if width <= self.at:
                return self.keys[:width]
            need = min(width - self.at, self.n_run)
            run = self._run_items(need).astype(np.uint64)
            after = width - self.at - need
            return np.concatenate([self.keys[: self.at], (self.run << np.uint64(32)) | run, self.keys[self.at: self.at + after]])
        if len(self.keys):
            return self.keys[:width]
        if width == 0:
            return np.empty(0, np.uint64)
        last = self.order[width - 1]
        idx = np.flatnonzero(self.high <= last)
        if len(idx) > width:  # ties on the last value: the first titles holding it
            below = self.high[idx] < last
            idx = np.concatenate([idx[below], idx[~below][: width - int(np.count_nonzero(below))]])
        keys = _keys(self.values[idx], idx)
        keys.sort()
        return keys


class RankedScores:
    """One generator's full-catalog float32 scores for a block of users, each row put in order once
    (``_SortedRow``): the features' mean, std and candidate ranks, and the generator's own top-k
    (``top``), all come from it (no argsort, no second search). Rows that are all the same
    (popularity) are ordered once."""

    def __init__(self, scores: np.ndarray) -> None:
        s = np.asarray(scores, dtype=np.float32)
        if s.ndim != 2:
            raise ValueError(f"scores must be (n_users, n_items), got shape {s.shape}")
        self.scores = s
        shared = len(s) > 1 and np.array_equal(s[1:2], s[:1]) and bool((s == s[:1]).all())
        self._row = s[:1] if shared else s
        # 8 rows' values made sortable at once (in cache still; a call per row would hold the GIL the
        # list threads share for longer), then a row at a time
        self.rows = [_SortedRow(values, high) for lo in range(0, len(self._row), _ROWS_AT_ONCE)
                     for values, high in zip(self._row[lo:lo + _ROWS_AT_ONCE], _high(self._row[lo:lo + _ROWS_AT_ONCE]))]

    @cached_property
    def _mean(self) -> np.ndarray:
        return self._row.mean(1, keepdims=True)

    @cached_property
    def mean(self) -> np.ndarray:
        """(n_users, 1) each user's mean score."""
        return np.broadcast_to(self._mean, (len(self.scores), 1))

    @cached_property
    def std(self) -> np.ndarray:
        """(n_users, 1) each user's standard deviation of scores, + 1e-6 (numpy's, given the mean:
        the same bits, one pass fewer)."""
        return np.broadcast_to(self._row.std(1, keepdims=True, mean=self._mean) + 1e-6, (len(self.scores), 1))

    def ranks(self, cand: np.ndarray, picked: np.ndarray | None = None) -> np.ndarray:
        """(n_users, C) int64 rank of each candidate (``cand`` >= 0) in its user's descending order;
        ``picked``: the candidates' scores, when already gathered."""
        if picked is None:
            picked = np.take_along_axis(self.scores, cand, axis=1)
        wanted = _keys(picked, cand)
        ranks = np.empty(cand.shape, np.int64)
        if len(self.rows) == 1 and len(cand):
            self.rows[0].ranks(wanted.ravel(), cand.ravel(), ranks.reshape(-1))
            return ranks
        for row, w, c, out in zip(self.rows, wanted, cand, ranks):
            row.ranks(w, c, out)
        return ranks

    def top(self, seen: np.ndarray, k: int) -> np.ndarray:
        """(n_users, min(k, n_items)) int64 best items first, those ``seen`` (n_users, n_items) bool
        marks and those with a non-finite score left out, -1 padded."""
        n, n_items = self.scores.shape
        k = min(k, n_items)
        skipped = seen.sum(1) + np.array([row.n_inf() for row in self.rows])  # before the k-th kept title
        width = min(k + int(skipped.max(initial=0)), n_items)
        if len(self.rows) == 1:
            window = np.broadcast_to(self.rows[0].window(width), (n, width))
        else:
            window = np.stack([row.window(width) for row in self.rows]) if n else np.empty((0, width), np.uint64)
        items = (window & np.uint64(0xFFFFFFFF)).astype(np.int64)
        blocked = np.take_along_axis(seen, items, axis=1) | ~_finite(window)
        order = np.argsort(blocked, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(items, order, axis=1)
        top[np.take_along_axis(blocked, order, axis=1)] = -1
        return top
