"""Fixed vocabularies of the synthetic world: genres, moods, devices, clocks and name word lists.

The word lists are what readable title and cast names are built from; the clocks are each
region's UTC offset.
"""

from __future__ import annotations

import numpy as np

from features.schema import REGIONS

# Genres and the maturity level a title of that genre starts from (raised by a random bump).
GENRE_BASE_MATURITY: dict[str, int] = {
    "Action": 2,
    "Adventure": 1,
    "Animation": 0,
    "Comedy": 2,
    "Crime": 3,
    "Documentary": 1,
    "Drama": 2,
    "Family": 0,
    "Fantasy": 2,
    "Horror": 3,
    "Kids": 0,
    "Reality": 2,
    "Romance": 2,
    "Sci-Fi": 2,
    "Thriller": 3,
}
GENRES: tuple[str, ...] = tuple(GENRE_BASE_MATURITY)
KIDS_GENRES: tuple[str, ...] = ("Animation", "Family", "Kids", "Adventure")
# How common each genre is as a title's primary genre (same order as GENRES).
GENRE_WEIGHTS = np.array([10, 6, 6, 12, 8, 5, 14, 5, 5, 6, 5, 4, 7, 6, 8], dtype=np.float64)
SERIES_GENRES: tuple[str, ...] = ("Crime", "Drama", "Reality", "Kids", "Animation", "Comedy", "Documentary")

MOODS: tuple[str, ...] = ("dark", "bright", "tense", "funny", "romantic", "epic")
DEVICES: tuple[str, ...] = ("tv", "mobile", "web", "tablet")
DEVICE_WEIGHTS = np.array([0.5, 0.3, 0.12, 0.08])

REGION_CODES: tuple[str, ...] = tuple(REGIONS)
REGION_WEIGHTS = np.array([0.34, 0.13, 0.1, 0.12, 0.08, 0.08, 0.08, 0.07])  # US largest
# Hours from UTC to local time, for the evening peak (one clock per region is enough here).
REGION_UTC_OFFSET_H: dict[str, float] = {
    "US": -5.0,
    "BR": -3.0,
    "GB": 0.0,
    "IN": 5.5,
    "JP": 9.0,
    "DE": 1.0,
    "MX": -6.0,
    "FR": 1.0,
}

_ADJECTIVES = (
    "Silent", "Crimson", "Hidden", "Last", "Broken", "Golden", "Midnight", "Wild", "Distant", "Hollow",
    "Burning", "Frozen", "Secret", "Little", "Lost", "Bright", "Restless", "Northern", "Electric", "Quiet",
)
_NOUNS = (
    "Harbor", "Kingdom", "River", "Signal", "Garden", "Empire", "Promise", "Shadow", "Orchard", "Voyage",
    "Circuit", "Lighthouse", "Frontier", "Echo", "Station", "Letter", "Crown", "Storm", "Island", "Code",
)
_PLACES = ("Avalon", "Brightwater", "Cedar Falls", "Dunmore", "Eastwick", "Fairhaven", "Glasslake", "Kestrel Bay")
_FIRST = (
    "Ava", "Ben", "Chloe", "Diego", "Elena", "Felix", "Grace", "Hiro", "Isla", "Jonas", "Kira", "Luca",
    "Maya", "Nikhil", "Olivia", "Pedro", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes", "Yuki",
)
_LAST = (
    "Alvarez", "Brooks", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
    "Kapoor", "Lopez", "Moreau", "Nakamura", "Okafor", "Park", "Quiroga", "Rossi", "Silva", "Turner",
)


def title_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct readable titles ("The Silent Harbor", "Secrets of Avalon", ...)."""
    names: list[str] = []
    seen: dict[str, int] = {}
    adj = rng.integers(0, len(_ADJECTIVES), n)
    noun = rng.integers(0, len(_NOUNS), n)
    place = rng.integers(0, len(_PLACES), n)
    form = rng.integers(0, 5, n)
    for i in range(n):
        a, b, p = _ADJECTIVES[adj[i]], _NOUNS[noun[i]], _PLACES[place[i]]
        name = (
            f"The {a} {b}",
            f"{b} of {p}",
            f"{a} {b}s",
            f"The {b} at {p}",
            f"{p}: {a} {b}",
        )[form[i]]
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name} {_roman(count + 1)}")
    return names


def cast_pool(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct person names (first + last; a middle initial once combinations run out)."""
    combos = [f"{first} {last}" for first in _FIRST for last in _LAST]
    order = rng.permutation(len(combos))
    pool = [combos[i] for i in order[: min(n, len(combos))]]
    letters = "ABCDEFGHJKLMNPRSTW"
    k = 0
    while len(pool) < n:  # only for very large catalogs
        first, last = combos[order[k % len(combos)]].split(" ")
        pool.append(f"{first} {letters[(k // len(combos)) % len(letters)]}. {last}")
        k += 1
    return pool


def search_key(name: str) -> str:
    """What a member types to find a title: its name in lower case without a leading article."""
    key = name.lower()
    return key[4:] if key.startswith("the ") else key


def _roman(k: int) -> str:
    numerals = ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = ""
    for value, letter in numerals:
        while k >= value:
            out += letter
            k -= value
    return out
