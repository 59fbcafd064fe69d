"""Determinism, schemas, chunked streaming and write/load parity of the world generator."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import world.generator as generator
from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA, TITLE_SCHEMA
from pathways.config import WorldConfig
from tests.world.world_cases import tiny
from world.generator import generate_to_dir, generate_world, load_world
from world.sizes import SIZES, preset


def test_same_seed_gives_identical_world():
    a, b = tiny(7), generate_world(preset("tiny", WorldConfig(seed=7)))
    assert a.events.equals(b.events) and a.titles.equals(b.titles) and a.profiles.equals(b.profiles)
    np.testing.assert_array_equal(a.profile_tastes, b.profile_tastes)
    np.testing.assert_array_equal(a.title_traits, b.title_traits)


def test_different_seed_gives_different_world():
    a, b = tiny(7), tiny(8)
    assert not a.events.equals(b.events)
    assert a.titles.column("name").to_pylist() != b.titles.column("name").to_pylist()
    assert not np.allclose(a.title_traits, b.title_traits)


def test_tables_have_exactly_the_contract_schemas():
    w = tiny()
    assert w.events.schema.equals(EVENT_SCHEMA, check_metadata=True)
    assert w.titles.schema.equals(TITLE_SCHEMA)
    assert w.profiles.schema.equals(PROFILE_SCHEMA)
    assert w.events.num_rows > 500


def test_truth_arrays_line_up_with_tables():
    w = tiny()
    P, T, d = w.profiles.num_rows, w.titles.num_rows, w.config.n_latent
    assert w.profile_tastes.shape == (P, d) and w.title_traits.shape == (T, d)
    assert w.title_popularity.shape == (T,) and np.isclose(w.title_popularity.sum(), 1.0)
    assert w.profile_genre_affinity.shape == (P, len(w.genre_names))
    assert [w.profile_index[int(p)] for p in w.profile_ids] == list(range(P))
    assert [w.title_index[int(t)] for t in w.title_ids] == list(range(T))


def test_write_then_load_gives_the_same_world(tmp_path):
    w = tiny()
    loaded = load_world(w.write(tmp_path / "w"))
    assert loaded.config == w.config
    for name in ("titles", "profiles", "events"):
        assert getattr(loaded, name).equals(getattr(w, name)), name
    for name in ("profile_tastes", "title_traits", "title_popularity", "profile_genre_affinity"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(w, name))
    assert loaded.artwork_seed == w.artwork_seed and loaded.genre_names == w.genre_names


def test_streaming_in_chunks_writes_what_generate_world_returns(tmp_path, monkeypatch):
    monkeypatch.setattr(generator, "BLOCK_PROFILES", 8)  # tiny has ~35 profiles: several blocks
    config = preset("tiny", WorldConfig(seed=11))
    whole = generate_world(config)
    counts = generate_to_dir(config, tmp_path, chunk_profiles=10)  # rounded up to 2 blocks
    assert pq.ParquetFile(tmp_path / "events.parquet").num_row_groups >= 2
    loaded = load_world(tmp_path)
    assert loaded.events.equals(whole.events)
    assert counts == {"titles": 30, "profiles": whole.profiles.num_rows, "events": whole.events.num_rows}


def test_load_world_names_missing_files(tmp_path):
    pq.write_table(tiny().titles, tmp_path / "titles.parquet")
    with pytest.raises(FileNotFoundError, match="profiles.parquet, events.parquet, truth.npz"):
        load_world(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": "yesterday"}, "world.start must be an ISO 8601"),
        ({"start": "2026-10-01T00:00:00"}, "time zone"),
        ({"profiles_per_account": (3, 2)}, "profiles_per_account must be"),
        ({"profiles_per_account": (0, 2)}, "profiles_per_account must be"),
    ],
)
def test_bad_start_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_world(preset("tiny", WorldConfig(**kwargs)))


def test_presets_resize_but_keep_the_other_knobs():
    base = WorldConfig(seed=3, kids_profile_share=0.3)
    tiny_config = preset("tiny", base)
    assert (tiny_config.n_titles, tiny_config.n_accounts, tiny_config.days) == (30, 15, 7)
    assert tiny_config.seed == 3 and tiny_config.kids_profile_share == 0.3
    assert preset("default", base) == base and set(SIZES) == {"tiny", "small", "default", "large", "1k", "10k", "30k", "100k", "300k", "1m"}
    with pytest.raises(ValueError, match="unknown world size 'huge'"):
        preset("huge")


def test_chunk_profiles_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="chunk_profiles must be >= 1"):
        generate_to_dir(preset("tiny"), tmp_path, chunk_profiles=0)
