"""MovieLens data sets mapped onto the Pathways schemas (events, titles, profiles).

Three on-disk layouts are read, detected from the files in the folder:

- ``csv``: ``ratings.csv`` (userId,movieId,rating,timestamp) + ``movies.csv`` (ml-latest-small, ml-25m)
- ``dat``: ``ratings.dat`` / ``movies.dat`` / optional ``users.dat``, ``::``-separated (ml-1m, ml-10m)
- ``100k``: ``u.data`` (tab-separated) + ``u.item`` (pipe-separated, latin-1) + optional ``u.user``

Mapping: each rating becomes a ``rating`` event (the rating value, id ``ml-r-<user>-<movie>``) and
a ``play`` event (fraction_watched 1.0, id ``ml-p-<user>-<movie>``) at the rating's timestamp.
Repeated (user, movie) ratings keep the earliest. Movies become titles (genres split on ``|``,
release date Jan 1 of the ``(1995)`` year in the title, runtime 100, maturity 2 or 0 for
children's films, licensed in every region, 3 artwork variants); movies rated but missing from
the movie file become titles named ``Movie <id>`` with no genres. Users become profiles (region
US, max maturity 4, not kids), created at their first rating.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.schema import EVENT_SCHEMA, MAX_MATURITY, PROFILE_SCHEMA, REGIONS, TITLE_SCHEMA, EventType

LAYOUT_FILES: dict[str, tuple[str, str]] = {  # layout -> (ratings file, movies file)
    "csv": ("ratings.csv", "movies.csv"),
    "dat": ("ratings.dat", "movies.dat"),
    "100k": ("u.data", "u.item"),
}
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
CHILDREN_GENRES = frozenset({"Children", "Children's"})
NO_GENRES = "(no genres listed)"
DEFAULT_RUNTIME_MIN = 100
DEFAULT_MATURITY = 2
UNKNOWN_RELEASE = date(1900, 1, 1)
_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


@dataclass(frozen=True)
class LoadedData:
    """What a source yields: tables in the project schemas and the layout that was read."""

    titles: pa.Table  # TITLE_SCHEMA
    profiles: pa.Table  # PROFILE_SCHEMA
    events: pa.Table  # EVENT_SCHEMA: 2 rows (rating, play) per rating
    layout: str  # a key of LAYOUT_FILES


def detect_layout(directory: Path | str) -> str:
    """The layout of a MovieLens folder (``csv``, ``dat`` or ``100k``); ValueError if none fits."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MovieLens folder not found: {directory}")
    for layout, (ratings, _) in LAYOUT_FILES.items():
        if (directory / ratings).is_file():
            return layout
    wanted = ", ".join(r for r, _ in LAYOUT_FILES.values())
    raise ValueError(f"{directory} holds no MovieLens ratings file (looked for {wanted})")


def load_movielens(directory: Path | str) -> LoadedData:
    """Read a MovieLens folder of any supported layout into events, titles and profiles."""
    directory = Path(directory)
    layout = detect_layout(directory)
    users, movies, ratings, ts = _read_ratings(directory, layout)
    users, movies, ratings, ts = _first_per_pair(users, movies, ratings, ts)
    movie_file = directory / LAYOUT_FILES[layout][1]
    known = _read_movies(movie_file, layout) if movie_file.is_file() else {}
    titles = _titles_table(known, np.unique(movies))
    user_ids = np.unique(np.concatenate([users, _read_user_ids(directory, layout)]))
    return LoadedData(titles, _profiles_table(user_ids, users, ts), _events_table(users, movies, ratings, ts), layout)


def _read_ratings(directory: Path, layout: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users int64, movies int64, ratings float32, timestamps int64 seconds), each shape (n,)."""
    path = directory / LAYOUT_FILES[layout][0]
    if layout == "csv":
        table = pacsv.read_csv(path)
        missing = {"userId", "movieId", "rating", "timestamp"} - set(table.column_names)
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}")
        cols = [table.column(c) for c in ("userId", "movieId", "rating", "timestamp")]
    else:
        # ``::`` splits on ':' into value, empty, value, ...: read with ':' and keep every other column.
        delimiter, step = (":", 2) if layout == "dat" else ("\t", 1)
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(autogenerate_column_names=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False),
        )
        if table.num_columns < 3 * step + 1:
            raise ValueError(f"{path}: expected user, movie, rating, timestamp per line")
        cols = [table.column(i * step) for i in range(4)]
    users, movies, ratings, ts = (np.asarray(c.to_numpy()) for c in cols)
    if np.any(ratings < 0.5) or np.any(ratings > 5.0):
        raise ValueError(f"{path}: ratings must lie in [0.5, 5]")
    return users.astype(np.int64), movies.astype(np.int64), ratings.astype(np.float32), ts.astype(np.int64)


def _first_per_pair(
    users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keep the earliest rating of each (user, movie) pair (ties: the first in file order)."""
    order = np.lexsort((np.arange(len(users)), ts, movies, users))
    u, m = users[order], movies[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (m[1:] != m[:-1])
    keep = np.sort(order[first])
    return users[keep], movies[keep], ratings[keep], ts[keep]


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_movies(path: Path, layout: str) -> dict[int, tuple[str, list[str], date]]:
    """movie id -> (name, genres, release date) from movies.csv / movies.dat / u.item."""
    movies: dict[int, tuple[str, list[str], date]] = {}
    if layout == "csv":
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"title": pa.string()}))
        for mid, name, genres in zip(*(table.column(c).to_pylist() for c in ("movieId", "title", "genres"))):
            movies[int(mid)] = (name, _split_genres(genres), _title_year(name))
        return movies
    for line in _decode(path).splitlines():
        if not line.strip():
            continue
        if layout == "dat":
            mid, name, genres = line.split("::", 2)
            movies[int(mid)] = (name, _split_genres(genres), _title_year(name))
        else:
            fields = line.split("|")
            flags = fields[-len(ML100K_GENRES) :]
            genres = [g for g, f in zip(ML100K_GENRES, flags) if f.strip() == "1" and g != "unknown"]
            movies[int(fields[0])] = (fields[1], genres, _title_year(fields[1]))
    return movies


def _split_genres(text: str | None) -> list[str]:
    text = (text or "").strip()
    return [] if text in ("", NO_GENRES) else text.split("|")


def _title_year(name: str) -> date:
    match = _YEAR.search(name or "")
    return date(int(match.group(1)), 1, 1) if match else UNKNOWN_RELEASE


def _read_user_ids(directory: Path, layout: str) -> np.ndarray:
    """User ids from users.dat / u.user when present (users without ratings still get profiles)."""
    name, sep = {"dat": ("users.dat", "::"), "100k": ("u.user", "|")}.get(layout, ("", ""))
    if not name or not (directory / name).is_file():
        return np.zeros(0, np.int64)
    lines = [line for line in _decode(directory / name).splitlines() if line.strip()]
    return np.array([int(line.split(sep, 1)[0]) for line in lines], dtype=np.int64)


def _titles_table(known: dict[int, tuple[str, list[str], date]], rated: np.ndarray) -> pa.Table:
    ids = sorted(set(known) | {int(m) for m in rated})
    rows = []
    for mid in ids:
        name, genres, released = known.get(mid, (f"Movie {mid}", [], UNKNOWN_RELEASE))
        rows.append(
            {
                "title_id": mid,
                "name": name,
                "genres": genres,
                "cast": [],
                "release_date": released,
                "runtime_min": DEFAULT_RUNTIME_MIN,
                "maturity_level": 0 if CHILDREN_GENRES & set(genres) else DEFAULT_MATURITY,
                "regions": list(REGIONS),
                "artwork_ids": [0, 1, 2],
                "artwork_themes": [f"genre:{genres[0] if genres else 'none'}", "mood:default", "cast:ensemble"],
            }
        )
    return pa.Table.from_pylist(rows, schema=TITLE_SCHEMA)


def _profiles_table(user_ids: np.ndarray, users: np.ndarray, ts: np.ndarray) -> pa.Table:
    """One profile per user id; created_at is the user's first rating (or the first rating overall)."""
    first = np.full(len(user_ids), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, np.searchsorted(user_ids, users), ts)
    first[first == np.iinfo(np.int64).max] = ts.min() if len(ts) else 0
    n = len(user_ids)
    return pa.table(
        {
            "profile_id": pa.array(user_ids, pa.int64()),
            "account_id": pa.array(user_ids, pa.int64()),
            "is_kids": pa.array(np.zeros(n, bool)),
            "region": pa.array(["US"] * n, pa.string()),
            "max_maturity_level": pa.array(np.full(n, MAX_MATURITY, np.int8)),
            "devices": pa.array([["web"]] * n, pa.list_(pa.string())),
            "created_at": pa.array(first * 1000, pa.int64()).cast(PROFILE_SCHEMA.field("created_at").type),
        },
        schema=PROFILE_SCHEMA,
    )


def _events_table(users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, ts: np.ndarray) -> pa.Table:
    """2n events: n ratings then n plays, in the rating file's order."""
    n = len(users)
    u, m = pa.array(users).cast(pa.string()), pa.array(movies).cast(pa.string())

    def ids(prefix: str) -> pa.Array:
        return pc.binary_join_element_wise(pa.array([prefix] * n, pa.string()), u, m, "-")

    def both(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, a])

    columns = {
        "event_id": pa.concat_arrays([ids("ml-r"), ids("ml-p")]) if n else pa.array([], pa.string()),
        "event_type": pa.array([EventType.RATING.value] * n + [EventType.PLAY.value] * n, pa.string()),
        "ts": pa.array(both(ts) * 1000, pa.int64()).cast(EVENT_SCHEMA.field("ts").type),
        "profile_id": pa.array(both(users), pa.int64()),
        "title_id": pa.array(both(movies), pa.int64()),
        "fraction_watched": pa.array(np.concatenate([np.full(n, np.nan), np.ones(n)]).astype(np.float32), from_pandas=True),
        "rating": pa.array(np.concatenate([ratings, np.full(n, np.nan, np.float32)]), from_pandas=True),
    }
    arrays = [
        columns[f.name] if f.name in columns else pa.nulls(2 * n, f.type) for f in EVENT_SCHEMA
    ]
    return pa.Table.from_arrays([a.cast(f.type) for a, f in zip(arrays, EVENT_SCHEMA)], schema=EVENT_SCHEMA)
