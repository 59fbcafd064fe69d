"""The synthetic catalog: titles with their attributes and the latent truth behind them.

Titles carry genres, cast, licences, maturity and artwork; the truth is their trait vectors and
popularity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import numpy as np
import pyarrow as pa

from features.schema import KIDS_MAX_MATURITY, MAX_MATURITY, TITLE_SCHEMA
from world.vocab import (
    GENRE_BASE_MATURITY,
    GENRE_WEIGHTS,
    GENRES,
    KIDS_GENRES,
    MOODS,
    REGION_CODES,
    SERIES_GENRES,
    cast_pool,
    title_names,
)

FIRST_TITLE_ID = 1
MIN_REGION_SHARE = 0.6  # every region licenses at least this share of the catalog
KIDS_TITLE_SHARE = 0.2  # at least this share of titles has a kids genre first
ZIPF_EXPONENT = 1.0


@dataclass(frozen=True)
class CatalogDraw:
    """The catalog table and its truth. Arrays are indexed by title position t in [0, T).

    ``traits`` (T, d) float64; ``popularity`` (T,) float64, sums to 1 (Zipf-like);
    ``genre_matrix`` (T, G) bool over ``vocab.GENRES``; ``genre_directions`` (G, d);
    ``licensed`` (R, T) bool over ``vocab.REGION_CODES``; ``maturity`` (T,) int8;
    ``runtime_s`` (T,) float64; ``is_series`` (T,) bool; ``release_s`` (T,) float64, seconds from
    the start of the log (negative: released before it); ``n_variants`` (T,) int64.
    """

    table: pa.Table
    traits: np.ndarray
    popularity: np.ndarray
    genre_matrix: np.ndarray
    genre_directions: np.ndarray
    licensed: np.ndarray
    maturity: np.ndarray
    runtime_s: np.ndarray
    is_series: np.ndarray
    release_s: np.ndarray
    n_variants: np.ndarray

    @property
    def title_ids(self) -> np.ndarray:
        """Title ids, int64 (T,)."""
        ids: np.ndarray = self.table.column("title_id").to_numpy()
        return ids

    @cached_property
    def genre_index(self) -> np.ndarray:
        """(T, 3) int64: each title's genre columns in ``genre_matrix``, padded with -1."""
        order = np.argsort(~self.genre_matrix, axis=1, kind="stable")[:, :3]
        return np.where(np.take_along_axis(self.genre_matrix, order, axis=1), order, -1)


def draw_catalog(
    n_titles: int, n_latent: int, start: datetime, days: int, rng: np.random.Generator
) -> CatalogDraw:
    """Draw ``n_titles`` titles whose latent traits live in ``n_latent`` dimensions."""
    T, G = n_titles, len(GENRES)
    genre_dirs = rng.normal(size=(G, n_latent))
    genre_dirs /= np.linalg.norm(genre_dirs, axis=1, keepdims=True)

    # Genres: a primary genre, then 0-2 more; a floor of kids' titles so kids profiles have a page.
    primary = rng.choice(G, size=T, p=GENRE_WEIGHTS / GENRE_WEIGHTS.sum())
    kids_idx = np.array([GENRES.index(g) for g in KIDS_GENRES])
    need = int(np.ceil(KIDS_TITLE_SHARE * T)) - int(np.isin(primary, kids_idx).sum())
    if need > 0:
        switch = rng.choice(np.flatnonzero(~np.isin(primary, kids_idx)), size=need, replace=False)
        primary[switch] = rng.choice(kids_idx, size=need)
    extra = rng.integers(0, 3, T)
    genre_matrix = np.zeros((T, G), dtype=bool)
    genre_matrix[np.arange(T), primary] = True
    base = np.array(list(GENRE_BASE_MATURITY.values()))
    genre_lists: list[list[str]] = []
    for t in range(T):
        pool = kids_idx if primary[t] in kids_idx else np.arange(G)  # kids' titles stay kid-safe
        pool = pool[pool != primary[t]]
        more = rng.choice(pool, size=min(extra[t], len(pool)), replace=False)
        genre_matrix[t, more] = True
        genre_lists.append([GENRES[primary[t]]] + [GENRES[g] for g in more])

    n_gen = genre_matrix.sum(axis=1, keepdims=True)
    traits = 0.9 * (genre_matrix @ genre_dirs) / np.sqrt(n_gen) + 0.45 * rng.normal(size=(T, n_latent))

    # Maturity: the highest base of the title's genres, sometimes one level higher.
    mat = np.where(genre_matrix, base[None, :], -1).max(axis=1)
    bump = rng.random(T) < np.where(mat >= 3, 0.15, 0.2)
    maturity = np.minimum(mat + bump, MAX_MATURITY).astype(np.int8)
    kids_primary = np.isin(primary, kids_idx)
    maturity[kids_primary] = np.minimum(maturity[kids_primary], KIDS_MAX_MATURITY)

    is_series = rng.random(T) < np.where(np.isin(primary, [GENRES.index(g) for g in SERIES_GENRES]), 0.6, 0.15)
    film_min = np.where(kids_primary, rng.integers(70, 100, T), rng.integers(85, 160, T))
    episode_min = np.where(kids_primary, rng.integers(11, 25, T), rng.integers(22, 62, T))
    runtime_min = np.where(is_series, episode_min, film_min).astype(np.int32)

    # Releases: spread over ten years, with a cluster in the 90 days before the end of the log
    # (some of it inside the log: such titles are not shown before their release day).
    end = start + timedelta(days=days)
    recent = rng.random(T) < 0.12
    ago_days = np.where(recent, rng.uniform(0, 90, T), rng.uniform(90, 3650, T))
    release_dates = [(end - timedelta(days=float(a))).date() for a in ago_days]
    release_dates = [min(d, (end - timedelta(days=1)).date()) for d in release_dates]
    release_s = np.array(
        [(datetime(d.year, d.month, d.day, tzinfo=start.tzinfo) - start).total_seconds() for d in release_dates]
    )

    licensed = _licences(T, rng)
    popularity = _zipf_popularity(T, rng)
    names = title_names(T, rng)
    casts = _casts(T, rng)
    themes = _artwork_themes(genre_lists, casts, rng)
    table = pa.Table.from_pydict(
        {
            "title_id": np.arange(FIRST_TITLE_ID, FIRST_TITLE_ID + T, dtype=np.int64),
            "name": names,
            "genres": genre_lists,
            "cast": casts,
            "release_date": release_dates,
            "runtime_min": runtime_min,
            "maturity_level": maturity,
            "regions": [[REGION_CODES[r] for r in np.flatnonzero(licensed[:, t])] for t in range(T)],
            "artwork_ids": [list(range(len(th))) for th in themes],
            "artwork_themes": themes,
        },
        schema=TITLE_SCHEMA,
    )
    return CatalogDraw(
        table=table,
        traits=traits,
        popularity=popularity,
        genre_matrix=genre_matrix,
        genre_directions=genre_dirs,
        licensed=licensed,
        maturity=maturity,
        runtime_s=runtime_min.astype(np.float64) * 60.0,
        is_series=is_series,
        release_s=release_s,
        n_variants=np.array([len(th) for th in themes], dtype=np.int64),
    )


def _licences(T: int, rng: np.random.Generator) -> np.ndarray:
    """(R, T) bool: 70% of titles everywhere, the rest in a random subset of regions, some in one
    region only; then every region is topped up to ``MIN_REGION_SHARE`` of the catalog."""
    R = len(REGION_CODES)
    global_title = rng.random(T) < 0.7
    exclusive = ~global_title & (rng.random(T) < 0.35)
    subset = rng.random((R, T)) < 0.55
    home = rng.integers(0, R, T)
    licensed = np.where(global_title[None, :], True, subset)
    licensed[:, exclusive] = False
    licensed[home[exclusive], np.flatnonzero(exclusive)] = True
    licensed[home, np.arange(T)] = True  # at least one region each
    for r in range(R):
        short = int(np.ceil(MIN_REGION_SHARE * T)) - int(licensed[r].sum())
        if short > 0:
            add = rng.choice(np.flatnonzero(~licensed[r]), size=short, replace=False)
            licensed[r, add] = True
    return licensed


def _zipf_popularity(T: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) Zipf-like popularity over a random order of titles, with lognormal jitter; sums to 1."""
    rank = rng.permutation(T)
    weight = (1.0 + rank) ** -ZIPF_EXPONENT * rng.lognormal(0.0, 0.3, T)
    popularity: np.ndarray = weight / weight.sum()
    return popularity


def _casts(T: int, rng: np.random.Generator) -> list[list[str]]:
    """2-4 names per title; names are drawn with Zipf weights so a few stars recur often."""
    pool = cast_pool(max(24, int(1.2 * T)), rng)
    weight = (1.0 + np.arange(len(pool))) ** -0.9
    weight /= weight.sum()
    sizes = rng.integers(2, 5, T)
    return [[pool[i] for i in rng.choice(len(pool), size=k, replace=False, p=weight)] for k in sizes]


def _artwork_themes(genres: list[list[str]], casts: list[list[str]], rng: np.random.Generator) -> list[list[str]]:
    """3-6 distinct themes per title: its primary genre first, then other genres, cast and moods."""
    out: list[list[str]] = []
    for gs, cast in zip(genres, casts):
        n = int(rng.integers(3, 7))
        options = [f"genre:{g}" for g in gs[1:]] + [f"cast:{c}" for c in cast[:2]] + [f"mood:{m}" for m in MOODS]
        pick = rng.choice(len(options), size=n - 1, replace=False)
        out.append([f"genre:{gs[0]}"] + [options[i] for i in pick])
    return out
