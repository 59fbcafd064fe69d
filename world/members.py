"""The synthetic members: accounts, their profiles, and the latent tastes that drive behaviour.

Accounts hold 1-4 profiles (some kids profiles), each with a region and devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from features.schema import KIDS_MAX_MATURITY, PROFILE_SCHEMA, TS
from world.vocab import DEVICES, GENRE_BASE_MATURITY, GENRE_WEIGHTS, GENRES, KIDS_GENRES, REGION_CODES, REGION_WEIGHTS

FIRST_PROFILE_ID = 100_001
FIRST_ACCOUNT_ID = 1
NEW_PROFILE_SHARE = 0.06  # created in the last days of the log: few or no events
JOINED_DURING_LOG_SHARE = 0.06


@dataclass(frozen=True)
class MemberDraw:
    """The profiles table and its truth. Arrays are indexed by profile position p in [0, P).

    ``tastes`` (P, d) float64; ``genre_affinity`` (P, G) float64 over ``vocab.GENRES`` (a logit
    bonus); ``activity`` (P,) float64, mean ~1 (sessions multiplier); ``region_idx`` (P,) int64
    into ``vocab.REGION_CODES``; ``max_maturity`` (P,) int8; ``is_kids`` (P,) bool;
    ``device_bits`` (P,) int64, bit i set when the profile uses ``vocab.DEVICES[i]``;
    ``created_s`` (P,) float64, seconds from the start of the log (negative: before it).
    """

    table: pa.Table
    tastes: np.ndarray
    genre_affinity: np.ndarray
    activity: np.ndarray
    region_idx: np.ndarray
    max_maturity: np.ndarray
    is_kids: np.ndarray
    device_bits: np.ndarray
    created_s: np.ndarray

    @property
    def profile_ids(self) -> np.ndarray:
        """Profile ids, int64 (P,)."""
        ids: np.ndarray = self.table.column("profile_id").to_numpy()
        return ids


def draw_members(
    n_accounts: int,
    profiles_per_account: tuple[int, int],
    kids_share: float,
    genre_directions: np.ndarray,
    start: datetime,
    days: int,
    rng: np.random.Generator,
) -> MemberDraw:
    """Draw accounts and their profiles; ``genre_directions`` (G, d) places tastes near genres."""
    lo, hi = profiles_per_account
    if not 1 <= lo <= hi:
        raise ValueError(f"profiles_per_account must be (lo, hi) with 1 <= lo <= hi, got {profiles_per_account}")
    A = n_accounts
    per_account = rng.integers(lo, hi + 1, A)
    account = np.repeat(np.arange(A), per_account)
    P = len(account)
    first = np.r_[0, np.cumsum(per_account)[:-1]]
    rank = np.arange(P) - first[account]  # 0 for the account owner

    # Kids: never the owner; others are kids with the probability that meets the target share.
    non_owner = P - A
    q = min(1.0, kids_share * P / non_owner) if non_owner else 0.0
    is_kids = (rank > 0) & (rng.random(P) < q)
    max_maturity = np.where(is_kids, KIDS_MAX_MATURITY, np.where(rng.random(P) < 0.6, 4, 3)).astype(np.int8)
    region_idx = rng.choice(len(REGION_CODES), size=A, p=REGION_WEIGHTS)[account]

    # Devices: each account owns 1-3; each profile uses a non-empty subset.
    acc_bits = _device_sets(A, rng)
    keep = rng.integers(1, 1 << len(DEVICES), P)
    bits = acc_bits[account] & keep
    bits = np.where(bits == 0, acc_bits[account] & -acc_bits[account], bits)  # lowest device as fallback

    # Creation: accounts up to two years before the log; a share of profiles joins during it,
    # some in its last days ("new profiles").
    day = 86_400.0
    acc_created = -rng.uniform(1, 730, A) * day
    created = np.where(rank == 0, acc_created[account], acc_created[account] * rng.uniform(0, 1, P))
    u = rng.random(P)
    during = u < JOINED_DURING_LOG_SHARE
    late = (u >= JOINED_DURING_LOG_SHARE) & (u < JOINED_DURING_LOG_SHARE + NEW_PROFILE_SHARE)
    created = np.where(during, rng.uniform(0, 0.8 * days, P) * day, created)
    created = np.where(late, rng.uniform(max(0.0, days - max(2.0, 0.15 * days)), days - 0.01, P) * day, created)
    created = np.floor(created)

    tastes, affinity = _tastes(is_kids, genre_directions, rng)
    start_ms = int(start.timestamp() * 1000)
    table = pa.table(
        {
            "profile_id": np.arange(FIRST_PROFILE_ID, FIRST_PROFILE_ID + P, dtype=np.int64),
            "account_id": (account + FIRST_ACCOUNT_ID).astype(np.int64),
            "is_kids": is_kids,
            "region": pa.array(np.asarray(REGION_CODES, dtype=object)[region_idx], pa.string()),
            "max_maturity_level": max_maturity,
            "devices": _device_lists(bits),
            "created_at": pa.array(start_ms + created.astype(np.int64) * 1000, TS),
        },
        schema=PROFILE_SCHEMA,
    )
    activity = rng.lognormal(-0.18, 0.6, P)  # mean ~1: some heavy, many light viewers
    activity *= np.where(is_kids, 0.8, 1.0)
    return MemberDraw(table, tastes, affinity, activity, region_idx, max_maturity, is_kids, bits, created)


def _tastes(is_kids: np.ndarray, genre_dirs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tastes (P, d) near two favourite genres, and genre affinities (P, G); kids like kids' genres."""
    P, (G, d) = len(is_kids), genre_dirs.shape
    kids_mask = np.isin(np.array(GENRES), KIDS_GENRES)
    log_w = np.log(GENRE_WEIGHTS / GENRE_WEIGHTS.sum())
    gumbel = log_w[None, :] - np.log(-np.log(rng.random((P, G))))
    gumbel[is_kids[:, None] & ~kids_mask[None, :]] = -np.inf
    favourites = np.argpartition(-gumbel, 1, axis=1)[:, :2]  # (P, 2), weighted sampling without replacement
    tastes = genre_dirs[favourites].mean(axis=1) * 1.3 + 0.55 * rng.normal(size=(P, d))

    affinity = 0.4 * rng.normal(size=(P, G))
    np.put_along_axis(affinity, favourites, affinity[np.arange(P)[:, None], favourites] + 1.2, axis=1)
    grown_up = np.array([GENRE_BASE_MATURITY[g] >= 2 for g in GENRES])
    affinity -= 2.5 * np.outer(is_kids, grown_up)
    affinity -= 0.6 * np.outer(~is_kids, np.isin(np.array(GENRES), ("Kids", "Family")))
    return tastes, affinity


def _device_sets(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) int64 bitmasks of 1-3 devices, TVs and phones most common."""
    own = rng.random((n, len(DEVICES))) < np.array([0.8, 0.7, 0.3, 0.25])
    bits = (own * (1 << np.arange(len(DEVICES)))).sum(axis=1)
    return np.where(bits == 0, 1 << rng.integers(0, len(DEVICES), n), bits).astype(np.int64)


def _device_lists(bits: np.ndarray) -> pa.ListArray:
    """Bitmasks (P,) -> a list<string> column of device names in ``DEVICES`` order."""
    has = (bits[:, None] >> np.arange(len(DEVICES))[None, :]) & 1
    offsets = np.r_[0, np.cumsum(has.sum(axis=1))].astype(np.int32)
    values = np.asarray(DEVICES, dtype=object)[np.nonzero(has)[1]]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.string()))
