"""The MovieLens loader on tiny files of each layout, written in the test."""

from __future__ import annotations

from datetime import date

import pyarrow.compute as pc
import pytest

from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA, TITLE_SCHEMA
from features.sources.movielens import detect_layout, load_movielens

GENRES_100K = ["0"] * 19


def flags(*indices: int) -> str:
    row = list(GENRES_100K)
    for i in indices:
        row[i] = "1"
    return "|".join(row)


def write_csv(d):
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.0,100\n1,20,3.5,90\n2,10,5.0,200\n2,30,1.0,50\n")
    (d / "movies.csv").write_text(
        'movieId,title,genres\n10,Toy Story (1995),Adventure|Children\n20,"Heat, The (1995)",Action|Crime\n'
        "30,Untitled,(no genres listed)\n40,Never Rated (2001),Drama\n"
    )


def write_dat(d):
    (d / "ratings.dat").write_text("1::10::4::100\n1::20::3::90\n2::10::5::200\n2::30::1::50\n")
    (d / "movies.dat").write_bytes(
        "10::Toy Story (1995)::Adventure|Children's\n20::Heat: The Return (1995)::Action|Crime\n"
        "30::Untitled::Drama\n40::Amélie (2001)::Comedy\n".encode("latin-1")
    )
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")


def write_100k(d):
    (d / "u.data").write_text("1\t10\t4\t100\n1\t20\t3\t90\n2\t10\t5\t200\n2\t30\t1\t50\n")
    (d / "u.item").write_bytes(
        (
            f"10|Toy Story (1995)|01-Jan-1995||http://x|{flags(2, 4)}\n"
            f"20|Heat (1995)|01-Jan-1995||http://x|{flags(1, 6)}\n"
            f"30|Untitled|||http://x|{flags(0)}\n"
            f"40|Café (2001)|01-Jan-2001||http://x|{flags(8)}\n"
        ).encode("latin-1")
    )


@pytest.mark.parametrize(("layout", "writer"), [("csv", write_csv), ("dat", write_dat), ("100k", write_100k)])
def test_each_layout_maps_to_the_schemas(tmp_path, layout, writer):
    writer(tmp_path)
    assert detect_layout(tmp_path) == layout
    data = load_movielens(tmp_path)
    assert data.layout == layout
    assert data.events.schema.equals(EVENT_SCHEMA, check_metadata=False)
    assert data.titles.schema.equals(TITLE_SCHEMA) and data.profiles.schema.equals(PROFILE_SCHEMA)
    events = data.events.to_pylist()
    assert len(events) == 8  # a rating and a play per rating
    by_id = {e["event_id"]: e for e in events}
    assert by_id["ml-r-1-20"]["event_type"] == "rating" and by_id["ml-r-1-20"]["rating"] == 3.5 - (layout != "csv") * 0.5
    play = by_id["ml-p-2-10"]
    assert (play["event_type"], play["fraction_watched"], play["rating"]) == ("play", 1.0, None)
    assert int(play["ts"].timestamp()) == 200 and play["profile_id"] == 2 and play["title_id"] == 10
    titles = {t["title_id"]: t for t in data.titles.to_pylist()}
    assert sorted(titles) == [10, 20, 30, 40]  # the catalog includes a never-rated movie
    toy = titles[10]
    assert toy["name"] == "Toy Story (1995)" and toy["release_date"] == date(1995, 1, 1)
    assert "Adventure" in toy["genres"] and toy["maturity_level"] == 0  # children's film
    assert titles[20]["genres"] == ["Action", "Crime"] and titles[20]["maturity_level"] == 2
    assert titles[30]["genres"] == ([] if layout != "dat" else ["Drama"])
    assert titles[30]["release_date"] == date(1900, 1, 1)
    assert len(toy["artwork_ids"]) == 3 and len(toy["regions"]) == 8 and toy["runtime_min"] == 100
    profiles = {p["profile_id"]: p for p in data.profiles.to_pylist()}
    assert set(profiles) == ({1, 2, 3} if layout == "dat" else {1, 2})
    assert int(profiles[1]["created_at"].timestamp()) == 90  # first rating
    assert (profiles[2]["region"], profiles[2]["max_maturity_level"], profiles[2]["is_kids"]) == ("US", 4, False)


def test_latin1_titles_are_decoded(tmp_path):
    write_dat(tmp_path)
    names = load_movielens(tmp_path).titles.column("name").to_pylist()
    assert "Amélie (2001)" in names and "Heat: The Return (1995)" in names


def test_repeated_ratings_keep_the_earliest_and_unknown_movies_get_titles(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.0,100\n1,10,2.0,50\n1,99,3.0,70\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n10,A (1990),Drama\n")
    data = load_movielens(tmp_path)
    ratings = data.events.filter(pc.equal(data.events.column("event_type"), "rating")).to_pylist()
    assert [(r["title_id"], r["rating"]) for r in ratings] == [(10, 2.0), (99, 3.0)]
    assert len(set(data.events.column("event_id").to_pylist())) == data.events.num_rows
    assert data.titles.to_pylist()[1]["name"] == "Movie 99"


def test_missing_or_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_movielens(tmp_path / "nope")
    with pytest.raises(ValueError, match="no MovieLens ratings file"):
        load_movielens(tmp_path)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,9.0,100\n")
    with pytest.raises(ValueError, match=r"ratings must lie in \[0.5, 5\]"):
        load_movielens(tmp_path)
    (tmp_path / "ratings.csv").write_text("user,movie\n1,10\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_movielens(tmp_path)
