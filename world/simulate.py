"""Member behaviour: sessions, the home page each session shows, and what members play from it.

``simulate_block`` simulates one block of profiles with its own random stream (derived from the
world seed and the block index), so a world generated in chunks equals one generated at once.
All work is vectorized over the block's sessions and impressions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features.schema import MAX_MATURITY, EventType
from world.catalog import CatalogDraw
from world.events import BlockKeys, EventParts, to_table
from world.members import MemberDraw
from world.playback import Plays, play_out
from world.vocab import DEVICE_WEIGHTS, DEVICES, GENRES, REGION_CODES, REGION_UTC_OFFSET_H, search_key

DAY_S = 86_400.0
CANDIDATES = 96  # titles the page policy considers per session
MAX_SLOTS = 40  # impressions a session can log: rows (2-5) x visible positions (4-8)
MAX_IMPRESSION_PLAYS = 2
SEARCH_PROBABILITY = 0.12
NEW_RELEASE_S = 30 * DAY_S

# play probability = sigmoid(logit) x position bias x artwork multiplier, where
# logit = PLAY_OFFSET + TASTE_WEIGHT z + genre affinity + POP_WEIGHT log popularity + new release
PLAY_OFFSET = -2.6
TASTE_WEIGHT = 1.1
POP_WEIGHT = 0.35
NEW_RELEASE_BONUS = 0.5
POLICY_TASTE_WEIGHT = 0.6  # how personal the simulated page policy is


@dataclass(frozen=True)
class SimContext:
    """Everything a block's simulation reads, built once per world.

    ``eligible`` (R, M+1, T) bool: licensed in region r and maturity <= m; ``pop_cdf`` (T,) for
    popularity sampling; ``taste_mean``/``taste_sd`` standardise taste . traits;
    ``artwork_multiplier(profile_idx, title_idx, artwork_idx) -> (n,)`` or None (no effect).
    """

    catalog: CatalogDraw
    members: MemberDraw
    eligible: np.ndarray
    pop_cdf: np.ndarray
    log_pop: np.ndarray
    taste_mean: float
    taste_sd: float
    queries: tuple[str, ...]
    start_ms: int
    days: int
    sessions_per_week: float
    seed: int
    artwork_multiplier: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None

    @classmethod
    def build(cls, catalog: CatalogDraw, members: MemberDraw, start_ms: int, days: int, sessions_per_week: float,
              seed: int, artwork_multiplier: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None,
              ) -> SimContext:
        mat_ok = catalog.maturity[None, :] <= np.arange(MAX_MATURITY + 1)[:, None]  # (M+1, T)
        eligible = catalog.licensed[:, None, :] & mat_ok[None, :, :]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
        sample = (members.tastes[rng.integers(0, len(members.tastes), 8192)]
                  * catalog.traits[rng.integers(0, len(catalog.traits), 8192)]).sum(axis=1)
        log_pop = np.log(catalog.popularity)
        names = catalog.table.column("name").to_pylist()
        queries = tuple(search_key(n) for n in names) + tuple(g.lower() for g in GENRES)
        return cls(catalog, members, eligible, np.cumsum(catalog.popularity ** 0.9) / (catalog.popularity ** 0.9).sum(),
                   log_pop - log_pop.mean(), float(sample.mean()), float(sample.std() + 1e-12), queries,
                   start_ms, days, sessions_per_week, seed, artwork_multiplier)


def simulate_block(ctx: SimContext, p0: int, p1: int, block: int) -> pa.Table:
    """Events (``EVENT_SCHEMA``, sorted by time) of profiles at positions [p0, p1)."""
    rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, 3, block]))
    m, cat = ctx.members, ctx.catalog
    end_s = ctx.days * DAY_S
    profile, ts, device = _sessions(ctx, p0, p1, rng)
    parts = EventParts()
    S = len(profile)
    keys = BlockKeys(m.profile_ids, cat.title_ids, device, ctx.queries, f"w{ctx.seed}-b{block}")
    if S == 0:
        return to_table(parts, keys, ctx.start_ms + int(end_s * 1000))
    session = np.arange(S)

    title2d, z2d, ranked, shown, rows, cols = _page(ctx, profile, ts, rng)
    s_idx, k_idx = np.nonzero(shown)  # impressions, in (session, slot) order
    title = title2d[s_idx, k_idx]
    row, pos = k_idx // cols[s_idx], k_idx % cols[s_idx]
    imp_s = ts[s_idx] + 3.0 + 6.0 * row + 1.5 * pos
    imp_ms = ctx.start_ms + np.round(imp_s * 1000).astype(np.int64)
    prof = profile[s_idx]
    n_var = cat.n_variants[title]
    art = np.minimum((rng.random(len(title)) * n_var).astype(np.int64), n_var - 1)
    parts.add(EventType.IMPRESSION, imp_ms, prof, s_idx, title=title, row_index=row, position=pos)
    parts.add(EventType.ARTWORK_IMPRESSION, imp_ms, prof, s_idx, title=title, row_index=row, position=pos,
              artwork_id=art, propensity=1.0 / n_var)

    # Plays from the page: taste, genre affinity, popularity, freshness, position and artwork.
    z = z2d[s_idx, k_idx]
    genre = _genre_affinity(m, cat, prof, title)
    fresh = (imp_s - cat.release_s[title]) < NEW_RELEASE_S
    logit = PLAY_OFFSET + TASTE_WEIGHT * z + genre + POP_WEIGHT * ctx.log_pop[title] + NEW_RELEASE_BONUS * fresh
    prob = 1.0 / (1.0 + np.exp(-logit)) / np.log2(2.0 + pos) * 0.9 ** row
    if ctx.artwork_multiplier is not None:
        prob = prob * ctx.artwork_multiplier(prof, title, art)
    played = rng.random(len(title)) < np.clip(prob, 0.0, 0.95)
    first = np.r_[0, np.flatnonzero(np.diff(s_idx)) + 1]
    count = np.cumsum(played)
    rank_in_session = count - np.repeat(count[first] - played[first], np.diff(np.r_[first, len(s_idx)])) - 1
    played &= rank_in_session < MAX_IMPRESSION_PLAYS
    i = np.flatnonzero(played)
    click_s = imp_s[i] + rng.uniform(5.0, 60.0, len(i))

    # Searches: the member looks for the best title the page did not show (or browses a genre).
    searching = rng.random(S) < SEARCH_PROBABILITY * np.where(m.is_kids[profile], 0.4, 1.0)
    n_shown = shown.sum(axis=1)
    target = title2d[session, n_shown]
    has_target = ranked[session, n_shown]
    finds = searching & has_target & (rng.random(S) < 0.6)
    genre_query = len(cat.traits) + rng.integers(0, len(GENRES), S)
    query = np.where(has_target & (finds | (rng.random(S) < 0.5)), target, genre_query)
    q = np.flatnonzero(searching)
    search_s = ts[q] + 4.0 + 6.0 * rows[q] + rng.uniform(5.0, 40.0, len(q))

    # Playback: page plays first (in slot order), then the searched title.
    f = np.flatnonzero(finds[q])
    fs = q[f]
    play_profile, play_title = np.r_[prof[i], profile[fs]], np.r_[title[i], target[fs]]
    play_z = np.r_[z[i], z2d[fs, n_shown[fs]]]
    plays = Plays(
        session=np.r_[s_idx[i], fs],
        profile=play_profile,
        title=play_title,
        requested_s=np.r_[click_s + 2.0, search_s[f] + 10.0],
        rank=np.r_[rank_in_session[i], np.full(len(fs), MAX_IMPRESSION_PLAYS)],
        z=play_z,
        liking=play_z + _genre_affinity(m, cat, play_profile, play_title),
    )
    in_log = play_out(plays, cat.runtime_s, cat.is_series, ctx.start_ms, parts, rng) < end_s
    # Clicks, and searches naming a title, only where the play they led to made it into the log.
    c = np.flatnonzero(in_log[: len(i)])
    parts.add(EventType.ARTWORK_CLICK, ctx.start_ms + np.round(click_s[c] * 1000).astype(np.int64), prof[i[c]],
              s_idx[i[c]], title=title[i[c]], row_index=row[i[c]], position=pos[i[c]], artwork_id=art[i[c]])
    named = np.full(S, -1)
    named[fs[in_log[len(i):]]] = target[fs[in_log[len(i):]]]
    parts.add(EventType.SEARCH, ctx.start_ms + np.round(search_s * 1000).astype(np.int64), profile[q], q,
              title=named[q], query=query[q])
    return to_table(parts, keys, ctx.start_ms + int(end_s * 1000))


def _page(ctx: SimContext, profile: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The home page of each session (S sessions of ``profile`` at ``ts``): a popularity + taste
    policy over sampled candidates, eligible titles only. Returns, over the MAX_SLOTS + 1 best
    candidates in rank order: titles (S, K), their z (S, K), ranked (S, K) (an eligible title holds
    that rank), shown (S, K) (it is on the page); and rows (S,), cols (S,) of the page layout."""
    m, cat = ctx.members, ctx.catalog
    S = len(profile)
    n_pop = CANDIDATES * 2 // 3
    cand = np.concatenate([
        np.minimum(np.searchsorted(ctx.pop_cdf, rng.random((S, n_pop))), len(cat.traits) - 1),
        rng.integers(0, len(cat.traits), (S, CANDIDATES - n_pop)),
    ], axis=1)
    ok = ctx.eligible[m.region_idx[profile][:, None], m.max_maturity[profile][:, None], cand]
    ok &= cat.release_s[cand] <= ts[:, None]
    srt = np.argsort(cand, axis=1, kind="stable")
    sorted_c = np.take_along_axis(cand, srt, axis=1)
    dup = np.zeros_like(ok)
    np.put_along_axis(dup, srt[:, 1:], sorted_c[:, 1:] == sorted_c[:, :-1], axis=1)
    z_all = (_taste_scores(m.tastes[profile], cat.traits, cand) - ctx.taste_mean) / ctx.taste_sd
    score = ctx.log_pop[cand] + POLICY_TASTE_WEIGHT * z_all - np.log(-np.log(rng.random(cand.shape)))
    score[~ok | dup] = -np.inf
    order = np.argsort(-score, axis=1)[:, : MAX_SLOTS + 1]
    rows, cols = rng.integers(2, 6, S), rng.integers(4, 9, S)
    ranked = np.isfinite(np.take_along_axis(score, order, axis=1))
    shown = ranked & (np.arange(MAX_SLOTS + 1)[None, :] < (rows * cols)[:, None])
    title2d, z2d = np.take_along_axis(cand, order, axis=1), np.take_along_axis(z_all, order, axis=1)
    return title2d, z2d, ranked, shown, rows, cols


def _sessions(ctx: SimContext, p0: int, p1: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions of profiles [p0, p1): (profile position, start in seconds from the log start,
    device index), each shape (S,). Evening peak in local time; none before a profile exists."""
    m = ctx.members
    end_s = ctx.days * DAY_S
    active_from = np.maximum(m.created_s[p0:p1], 0.0)
    active_days = (end_s - active_from) / DAY_S
    rate = ctx.sessions_per_week / 7.0 * active_days * m.activity[p0:p1]
    n = rng.poisson(rate)
    profile = np.repeat(np.arange(p0, p1), n)
    S = len(profile)
    begin = np.maximum(m.created_s[profile], 0.0)
    day = np.floor((begin + rng.random(S) * (end_s - begin)) / DAY_S)
    kids = m.is_kids[profile]
    mode = rng.random(S)
    hour = np.where(
        mode < 0.7,
        rng.normal(np.where(kids, 17.5, 20.5), 1.4, S),
        np.where(mode < 0.93, rng.normal(14.0, 3.5, S), rng.uniform(0.0, 24.0, S)),
    ) % 24.0
    offset = np.array([REGION_UTC_OFFSET_H[r] for r in REGION_CODES])[m.region_idx[profile]]
    ts = day * DAY_S + (hour - offset) * 3600.0
    keep = (ts >= begin) & (ts < end_s - 60.0)
    profile, ts = profile[keep], ts[keep]
    weights = ((m.device_bits[profile][:, None] >> np.arange(len(DEVICES))) & 1) * DEVICE_WEIGHTS[None, :]
    cum = np.cumsum(weights, axis=1)
    device = (rng.random(len(profile))[:, None] * cum[:, -1:] >= cum).sum(axis=1)
    return profile, ts, np.minimum(device, len(DEVICES) - 1)


def _genre_affinity(m: MemberDraw, cat: CatalogDraw, profile: np.ndarray, title: np.ndarray) -> np.ndarray:
    """Mean affinity (n,) of each profile for the genres of its paired title."""
    g = cat.genre_index[title]  # (n, 3), -1 padded
    aff = np.take_along_axis(m.genre_affinity[profile], np.maximum(g, 0), axis=1)
    mean: np.ndarray = (aff * (g >= 0)).sum(axis=1) / (g >= 0).sum(axis=1)
    return mean


def _taste_scores(tastes: np.ndarray, traits: np.ndarray, cand: np.ndarray, batch: int = 4096) -> np.ndarray:
    """taste_s . trait_c for every session s and its candidates: tastes (S, d), cand (S, C) -> (S, C),
    in batches of sessions so the (batch, C, d) gather stays small."""
    out = np.empty(cand.shape, dtype=np.float64)
    for lo in range(0, len(cand), batch):
        hi = lo + batch
        out[lo:hi] = np.einsum("sd,scd->sc", tastes[lo:hi], traits[cand[lo:hi]])
    return out
