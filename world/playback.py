"""Playback of the plays a session decided on: binges, pauses, heartbeats, completions, ratings.

All vectorized over plays (one loop over the few play ranks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.schema import EventType
from world.events import EventParts

HEARTBEAT_S = 300.0  # one heartbeat per five minutes of viewing
COMPLETE_FRACTION = 0.9
MAX_EPISODES = 6
RATING_PROBABILITY = 0.12
GAP_S = 20.0  # between one play ending and the next starting


@dataclass(frozen=True)
class Plays:
    """Plays decided in a block, one row per play: ``session``/``profile``/``title`` (positions),
    ``requested_s`` (when the member asked for it, seconds from the log start), ``rank`` (0-based
    order within its session), ``z`` (standardised taste . traits) and ``liking`` (z + genre
    affinity), all shape (n,)."""

    session: np.ndarray
    profile: np.ndarray
    title: np.ndarray
    requested_s: np.ndarray
    rank: np.ndarray
    z: np.ndarray
    liking: np.ndarray


def play_out(
    plays: Plays,
    runtime_s: np.ndarray,
    is_series: np.ndarray,
    start_ms: int,
    parts: EventParts,
    rng: np.random.Generator,
) -> np.ndarray:
    """Add play/pause/heartbeat/complete/rating events of ``plays`` to ``parts``; plays of a session
    run one after another. Returns each play's start (seconds from the log start), shape (n,)."""
    n = len(plays.title)
    if n == 0:
        return np.zeros(0)
    runtime = runtime_s[plays.title]
    series = is_series[plays.title]
    like = 1.0 / (1.0 + np.exp(-(0.0 + 1.0 * plays.liking)))  # chance of finishing an episode / film
    # Binge: a series play runs through more episodes the more the member likes it.
    episodes = np.where(series, rng.geometric(np.clip(1.0 - 0.75 * like, 0.2, 0.95)), 1)
    episodes = np.minimum(episodes, MAX_EPISODES)

    ep_play = np.repeat(np.arange(n), episodes)
    ep_k = np.arange(len(ep_play)) - np.repeat(np.cumsum(episodes) - episodes, episodes)
    last = ep_k == episodes[ep_play] - 1
    finishes = ~last | (rng.random(len(ep_play)) < like[ep_play])
    fraction = np.where(finishes, rng.uniform(COMPLETE_FRACTION, 1.0, len(ep_play)), rng.uniform(0.02, 0.85, len(ep_play)))
    watched = fraction * runtime[ep_play]
    paused = rng.random(len(ep_play)) < 0.3
    pause_at = rng.uniform(0.05, 0.95, len(ep_play)) * watched
    pause_len = np.where(paused, rng.uniform(30, 900, len(ep_play)), 0.0)
    wall = watched + pause_len + GAP_S

    # Episode offsets within a play, then plays of one session back to back.
    ep_offset = np.cumsum(wall) - wall
    ep_offset -= np.repeat(ep_offset[np.cumsum(episodes) - episodes], episodes)
    play_wall = np.bincount(ep_play, weights=wall, minlength=n)
    start = plays.requested_s.astype(np.float64).copy()
    order = np.lexsort((plays.rank, plays.session))
    prev_end = np.full(n, -np.inf)
    sess_sorted, start_sorted, wall_sorted = plays.session[order], start[order], play_wall[order]
    same = np.r_[False, sess_sorted[1:] == sess_sorted[:-1]]
    for _ in range(int(plays.rank.max()) + 1):  # a few passes settle chains of consecutive plays
        prev_end[1:] = np.where(same[1:], start_sorted[:-1] + wall_sorted[:-1], -np.inf)
        start_sorted = np.maximum(start_sorted, prev_end)
    start[order] = start_sorted

    ep_start = start[ep_play] + ep_offset
    sess, prof, title = plays.session[ep_play], plays.profile[ep_play], plays.title[ep_play]

    def ms(seconds: np.ndarray) -> np.ndarray:
        return start_ms + np.round(seconds * 1000).astype(np.int64)

    parts.add(EventType.PLAY, ms(ep_start), prof, sess, title=title, fraction_watched=fraction)
    p = np.flatnonzero(paused)
    parts.add(
        EventType.PAUSE, ms(ep_start[p] + pause_at[p]), prof[p], sess[p], title=title[p],
        fraction_watched=pause_at[p] / runtime[ep_play[p]], position_s=pause_at[p],
    )
    n_hb = np.floor(watched / HEARTBEAT_S).astype(np.int64)
    hb_ep = np.repeat(np.arange(len(ep_play)), n_hb)
    hb_pos = HEARTBEAT_S * (1 + np.arange(len(hb_ep)) - np.repeat(np.cumsum(n_hb) - n_hb, n_hb))
    hb_ts = ep_start[hb_ep] + hb_pos + np.where(hb_pos > pause_at[hb_ep], pause_len[hb_ep], 0.0)
    parts.add(EventType.HEARTBEAT, ms(hb_ts), prof[hb_ep], sess[hb_ep], title=title[hb_ep], position_s=hb_pos)
    c = np.flatnonzero(fraction >= COMPLETE_FRACTION)
    parts.add(
        EventType.COMPLETE, ms(ep_start[c] + watched[c] + pause_len[c]), prof[c], sess[c], title=title[c],
        fraction_watched=fraction[c],
    )
    # Ratings: some plays are rated after their last episode, higher when the member liked it.
    r = np.flatnonzero(last & (rng.random(len(ep_play)) < RATING_PROBABILITY))
    raw = 3.0 + 1.1 * plays.liking[ep_play[r]] + 0.8 * (fraction[r] - 0.5) + rng.normal(0.0, 0.6, len(r))
    rating = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)
    parts.add(EventType.RATING, ms(ep_start[r] + watched[r] + pause_len[r] + 5.0), prof[r], sess[r], title=title[r], rating=rating)
    return start
