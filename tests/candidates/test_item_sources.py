"""Because-you-watched anchors and similarity; continue watching; new releases; genres."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from candidates.because_you_watched import BecauseYouWatchedSource, recent_anchors, similar_titles
from candidates.continue_watching import ContinueWatchingSource
from candidates.genres import GenreSource, genre_affinity, kids_safe_genres
from candidates.new_releases import NewReleasesSource, release_window
from candidates.trending import title_popularity
from pathways.catalog import Catalog
from pathways.types import ProfileContext
from tests.candidates import world


def _byw() -> BecauseYouWatchedSource:
    return BecauseYouWatchedSource(world.als(), world.catalog(), world.CONFIG)


def test_anchors_are_the_most_recent_distinct_titles() -> None:
    assert recent_anchors((101, 113, 102, 113, 104), 2, {101, 102, 104, 113}) == [104, 113]
    assert recent_anchors((101, 113, 102, 113, 104), 3, {101, 102, 104, 113}) == [104, 113, 102]
    assert recent_anchors((101, 555, 102), 2, {101, 102}) == [102, 101]  # 555 has no factors
    assert recent_anchors((), 2, {101}) == []


def test_rows_anchor_on_recent_titles_with_evidence_and_no_seen_titles() -> None:
    profile = ProfileContext(1, "US", 4, history=(101, 113, 102, 113, 104))
    rows = _byw().generate(profile)
    assert [r.key for r in rows] == ["104", "113"]
    assert [r.evidence for r in rows] == ["Because you watched Title 104", "Because you watched Title 113"]
    for row in rows:
        assert not set(row.title_ids.tolist()) & set(profile.history)


def test_similar_titles_come_from_the_anchor_block() -> None:
    source = _byw()
    for anchor, block in ((102, world.BLOCK_A), (118, world.BLOCK_B)):
        ids, cosines = similar_titles(source.index, world.als(), anchor, 5)
        assert anchor not in ids.tolist()
        assert set(ids.tolist()) <= set(block)
        assert np.all(np.diff(cosines) <= 0) and cosines[0] <= 1.0 + 1e-5
    with pytest.raises(KeyError, match="9999"):
        similar_titles(source.index, world.als(), 9999, 3)


def test_continue_watching_orders_by_recency_and_excludes_finished() -> None:
    profile = ProfileContext(
        7, "US", 4,
        finished=frozenset({104}),
        in_progress={101: 0.5, 102: 0.2, 103: 0.95, 104: 0.5, 106: 0.01, 107: 0.3},
        in_progress_ts={101: 100.0, 102: 300.0, 103: 400.0, 104: 500.0, 106: 600.0, 107: 200.0},
    )
    (row,) = ContinueWatchingSource(world.catalog(), world.CONFIG).generate(profile)
    # 103 is past finished_fraction, 104 finished, 106 below continue_min_fraction.
    assert row.title_ids.tolist() == [102, 107, 101]
    assert row.evidence == "Continue watching" and row.source == "continue_watching"


def test_continue_watching_drops_rule_breakers_and_is_empty_without_progress() -> None:
    source = ContinueWatchingSource(world.catalog(), world.CONFIG)
    kid = ProfileContext(30, "GB", 1, in_progress={112: 0.5, 105: 0.5, 101: 0.5}, in_progress_ts={112: 3.0, 105: 2.0, 101: 1.0})
    assert [r.title_ids.tolist() for r in source.generate(kid)] == [[101]]  # 112 mature, 105 BR only
    assert source.generate(ProfileContext(31, "GB", 1)) == []


def test_new_releases_only_within_the_window_newest_first() -> None:
    cat = world.catalog()
    window = release_window(cat, world.AS_OF, 30)
    assert sorted(cat.title_ids[window].tolist()) == [121, 122, 123]  # 124 is released tomorrow
    source = NewReleasesSource(cat, np.zeros(len(cat), np.float32), world.CONFIG, world.AS_OF)
    (row,) = source.generate(ProfileContext(1, "US", 4))
    assert row.title_ids.tolist() == [123, 122, 121]
    (teen,) = source.generate(ProfileContext(1, "US", 2))
    assert teen.title_ids.tolist() == [122]  # 121 and 123 are mature


def test_new_releases_break_date_ties_by_popularity_then_id() -> None:
    titles = world.titles_table()
    same_day = world.AS_OF.date() - timedelta(days=2)
    dates = [same_day if t in (101, 102, 103, 104) else d
             for t, d in zip(titles.column("title_id").to_pylist(), titles.column("release_date").to_pylist())]
    titles = titles.set_column(titles.schema.get_field_index("release_date"), "release_date", pa.array(dates, pa.date32()))
    cat = Catalog.from_table(titles)
    popularity = np.zeros(len(cat), np.float32)
    popularity[cat.index[103]], popularity[cat.index[101]] = 5.0, 2.0
    source = NewReleasesSource(cat, popularity, world.CONFIG.model_copy(update={"per_source": 20}), world.AS_OF)
    # 123 (10 days ago) and older releases follow the four same-day titles.
    assert source.row.title_ids.tolist() == [103, 101, 102, 104, 123, 122, 121]


def test_new_releases_require_aware_as_of() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        release_window(world.catalog(), world.AS_OF.replace(tzinfo=None), 30)


def _genres() -> GenreSource:
    return GenreSource(world.catalog(), title_popularity(world.events(), world.catalog(), world.AS_OF), world.CONFIG)


def test_genre_rows_follow_affinity_and_popularity() -> None:
    cat = world.catalog()
    assert genre_affinity((113, 115, 114, 999), cat) == {"Horror": 2.0, "Drama": 1.0}
    source = _genres()
    rows = source.generate(ProfileContext(9, "US", 4, history=(113, 115, 114)))
    assert [r.key for r in rows] == ["Horror", "Drama"]
    assert rows[0].evidence == "Because you like Horror"
    for row in rows:
        pops = source.popularity[cat.positions(row.title_ids)]
        assert np.all(np.diff(pops) <= 0)
        assert all(row.key in cat.genres[cat.index[t]] for t in row.title_ids.tolist())
        assert not {113, 114, 115} & set(row.title_ids.tolist())


def test_kids_get_only_kids_safe_genres_and_cold_profiles_get_popular_genres() -> None:
    assert kids_safe_genres(world.catalog(), 0.5) == {"Animation", "Comedy"}
    source = _genres()
    kid_rows = source.generate(ProfileContext(30, "GB", 1, is_kids=True, history=(113, 115, 101)))
    assert [r.key for r in kid_rows] == ["Animation"]  # Horror is liked more, but not kids-safe
    cold = source.generate(ProfileContext(50, "US", 4))
    assert len(cold) == world.CONFIG.genre_rows
    assert all(r.evidence == r.key for r in cold)


def test_genre_source_rejects_misaligned_popularity() -> None:
    with pytest.raises(ValueError, match="popularity must have shape"):
        GenreSource(world.catalog(), np.zeros(3, np.float32), world.CONFIG)
