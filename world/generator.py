"""The world's public entry points: ``generate_world``, ``generate_to_dir`` and ``load_world``.

``generate_world(config) -> World``, ``generate_to_dir(config, out)`` and ``load_world(dir)``.

Everything is deterministic from ``config.seed``. Events are simulated per block of
``BLOCK_PROFILES`` profiles, each with its own random stream, so ``generate_to_dir`` can stream a
large world to Parquet chunk by chunk and still write exactly what ``generate_world`` returns.
Events are sorted by time within each block (one block up to ``BLOCK_PROFILES`` profiles).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA, TITLE_SCHEMA
from pathways.config import WorldConfig
from world.catalog import CatalogDraw, draw_catalog
from world.members import draw_members
from world.simulate import SimContext, simulate_block
from world.vocab import GENRES

if TYPE_CHECKING:
    from world.artwork import ArtworkTruth

BLOCK_PROFILES = 2048
FILES = ("titles.parquet", "profiles.parquet", "events.parquet", "truth.npz")


@dataclass(frozen=True)
class World:
    """A generated world and the truth behind it (arrays indexed by table row position).

    ``profile_tastes`` (P, d), ``title_traits`` (T, d), ``title_popularity`` (T,) (sums to 1),
    ``profile_genre_affinity`` (P, G) over ``genre_names``; ``profile_ids`` (P,), ``title_ids``
    (T,) are the ids of rows 0..P-1 / 0..T-1. ``artwork_seed`` rebuilds the artwork truth.
    """

    config: WorldConfig
    titles: pa.Table
    profiles: pa.Table
    events: pa.Table
    profile_tastes: np.ndarray
    title_traits: np.ndarray
    title_popularity: np.ndarray
    profile_genre_affinity: np.ndarray
    artwork_seed: int
    genre_names: tuple[str, ...] = field(default=GENRES)

    @property
    def profile_ids(self) -> np.ndarray:
        """Profile ids, int64 (P,)."""
        ids: np.ndarray = self.profiles.column("profile_id").to_numpy()
        return ids

    @property
    def title_ids(self) -> np.ndarray:
        """Title ids, int64 (T,)."""
        ids: np.ndarray = self.titles.column("title_id").to_numpy()
        return ids

    @cached_property
    def profile_index(self) -> dict[int, int]:
        """profile_id -> row position."""
        return {int(p): i for i, p in enumerate(self.profile_ids)}

    @cached_property
    def title_index(self) -> dict[int, int]:
        """title_id -> row position."""
        return {int(t): i for i, t in enumerate(self.title_ids)}

    def artwork_truth(self) -> ArtworkTruth:
        """The ``world.artwork.ArtworkTruth`` that shaped this world's artwork clicks."""
        from world.artwork import ArtworkTruth

        return ArtworkTruth.build(
            self.profile_tastes, self.title_traits, self.titles.column("artwork_themes").to_pylist(),
            self.titles.column("genres").to_pylist(), self.artwork_seed,
        )

    def write(self, out_dir: Path | str) -> Path:
        """Write ``titles.parquet``, ``profiles.parquet``, ``events.parquet`` and ``truth.npz``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.titles, out / "titles.parquet")
        pq.write_table(self.profiles, out / "profiles.parquet")
        pq.write_table(self.events, out / "events.parquet")
        _write_truth(out, self.config, self.profile_tastes, self.title_traits, self.title_popularity,
                     self.profile_genre_affinity, self.artwork_seed)
        return out


class _Draw:
    """Catalog, members and the simulation context of a config: everything but the events."""

    def __init__(self, config: WorldConfig) -> None:
        start = _parse_start(config.start)
        catalog = draw_catalog(config.n_titles, config.n_latent, start, config.days, _rng(config.seed, 1))
        members = draw_members(config.n_accounts, config.profiles_per_account, config.kids_profile_share,
                               catalog.genre_directions, start, config.days, _rng(config.seed, 2))
        self.config, self.catalog, self.members = config, catalog, members
        self.artwork_seed = int(np.random.SeedSequence([config.seed, 4]).generate_state(1)[0])
        multiplier = _artwork_multiplier(members.tastes, catalog, self.artwork_seed)
        self.ctx = SimContext.build(catalog, members, int(start.timestamp() * 1000), config.days,
                                    config.sessions_per_profile_per_week, config.seed, multiplier)

    @property
    def n_profiles(self) -> int:
        return len(self.members.tastes)

    def blocks(self, lo: int = 0, hi: int | None = None) -> Iterator[pa.Table]:
        """Event tables of the blocks covering profile positions [lo, hi), lo a block boundary."""
        hi = self.n_profiles if hi is None else hi
        for p0 in range(lo, hi, BLOCK_PROFILES):
            yield simulate_block(self.ctx, p0, min(p0 + BLOCK_PROFILES, self.n_profiles), p0 // BLOCK_PROFILES)


def generate_world(config: WorldConfig) -> World:
    """Generate the whole world in memory (for worlds up to a few thousand profiles)."""
    draw = _Draw(config)
    events = pa.concat_tables(list(draw.blocks())) if draw.n_profiles else EVENT_SCHEMA.empty_table()
    return World(
        config=config,
        titles=draw.catalog.table,
        profiles=draw.members.table,
        events=events.combine_chunks(),
        profile_tastes=draw.members.tastes,
        title_traits=draw.catalog.traits,
        title_popularity=draw.catalog.popularity,
        profile_genre_affinity=draw.members.genre_affinity,
        artwork_seed=draw.artwork_seed,
    )


def generate_to_dir(config: WorldConfig, out_dir: Path | str, chunk_profiles: int = BLOCK_PROFILES,
                    progress: bool = False) -> dict[str, int]:
    """Generate into ``out_dir`` (the files of ``World.write``), streaming the events of about
    ``chunk_profiles`` profiles at a time (rounded up to whole blocks of ``BLOCK_PROFILES``) into
    ``events.parquet``, so memory stays bounded by one chunk. Returns the row counts written."""
    if chunk_profiles < 1:
        raise ValueError(f"chunk_profiles must be >= 1, got {chunk_profiles}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    draw = _Draw(config)
    pq.write_table(draw.catalog.table, out / "titles.parquet")
    pq.write_table(draw.members.table, out / "profiles.parquet")
    _write_truth(out, config, draw.members.tastes, draw.catalog.traits, draw.catalog.popularity,
                 draw.members.genre_affinity, draw.artwork_seed)
    step = max(1, -(-chunk_profiles // BLOCK_PROFILES)) * BLOCK_PROFILES
    n_events = 0
    tmp = out / "events.parquet.tmp"
    with pq.ParquetWriter(tmp, EVENT_SCHEMA) as writer:
        for lo in range(0, draw.n_profiles, step):
            hi = min(lo + step, draw.n_profiles)
            chunk = pa.concat_tables(list(draw.blocks(lo, hi)))
            writer.write_table(chunk)
            n_events += chunk.num_rows
            del chunk
            if progress and ((lo // step) % 16 == 15 or hi == draw.n_profiles):
                print(f"  profiles {hi:,}/{draw.n_profiles:,}: {n_events:,} events", flush=True)
    tmp.replace(out / "events.parquet")
    return {"titles": draw.catalog.table.num_rows, "profiles": draw.n_profiles, "events": n_events}


def load_world(world_dir: Path | str) -> World:
    """Read a world written by ``World.write`` or ``generate_to_dir``."""
    src = Path(world_dir)
    missing = [f for f in FILES if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(f"world folder {src} lacks {', '.join(missing)}")
    truth = np.load(src / "truth.npz")
    return World(
        config=WorldConfig.model_validate_json(str(truth["config_json"])),
        titles=pq.read_table(src / "titles.parquet", schema=TITLE_SCHEMA),
        profiles=pq.read_table(src / "profiles.parquet", schema=PROFILE_SCHEMA),
        events=pq.read_table(src / "events.parquet", schema=EVENT_SCHEMA).combine_chunks(),
        profile_tastes=truth["profile_tastes"],
        title_traits=truth["title_traits"],
        title_popularity=truth["title_popularity"],
        profile_genre_affinity=truth["profile_genre_affinity"],
        artwork_seed=int(truth["artwork_seed"]),
        genre_names=tuple(str(g) for g in truth["genre_names"]),
    )


def _write_truth(out: Path, config: WorldConfig, tastes: np.ndarray, traits: np.ndarray, popularity: np.ndarray,
                 affinity: np.ndarray, artwork_seed: int) -> None:
    np.savez(
        out / "truth.npz",
        profile_tastes=tastes,
        title_traits=traits,
        title_popularity=popularity,
        profile_genre_affinity=affinity,
        artwork_seed=np.int64(artwork_seed),
        genre_names=np.array(GENRES),
        config_json=np.array(json.dumps(config.model_dump(mode="json"))),
    )


def _artwork_multiplier(
    tastes: np.ndarray, catalog: CatalogDraw, seed: int
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None:
    """``ArtworkTruth.play_multiplier`` when ``world/artwork.py`` exists, else None (no effect)."""
    try:
        from world.artwork import ArtworkTruth
    except ImportError:
        return None
    truth = ArtworkTruth.build(tastes, catalog.traits, catalog.table.column("artwork_themes").to_pylist(),
                               catalog.table.column("genres").to_pylist(), seed)
    return truth.play_multiplier


def _parse_start(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"world.start must be an ISO 8601 time, got {text!r}") from None
    if start.tzinfo is None:
        raise ValueError(f"world.start must carry a time zone (e.g. 'Z'), got {text!r}")
    return start


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))
