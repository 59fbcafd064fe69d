"""The online profile vector: packed from a profile_stats table, unpacked to the same values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from features.profile_vector import FIELDS, VECTOR, pack, unpack_frame, unpack_row, with_vector


def _table() -> pa.Table:
    return pa.table({
        "profile_id": [1, 2, 3],
        "plays_28d": [3, None, 0],
        "impressions_28d": [20, 1, 0],
        "play_through_rate_28d": pa.array([0.63, None, 0.1], pa.float32()),
        "mean_fraction_watched_28d": pa.array([0.5, 0.2, None], pa.float32()),
        "days_since_last_play": pa.array([1.5, None, 2.0], pa.float32()),
        "genre_affinity": pa.array([[0.5, 0.5, 0.0], None, [0.1, 0.2, 0.7]], pa.list_(pa.float32())),
        "is_kids": [False, True, None],
        "max_maturity_level": [3, 1, 2],
    })


def test_each_value_reads_back_as_the_table_holds_it_nulls_as_none():
    table = _table()
    vectors = pack(table).to_pylist()
    rows = table.to_pylist()
    for row, vector in zip(rows, vectors):
        got = unpack_row(vector)
        for name in FIELDS:
            want = row[name]
            if isinstance(want, float):
                assert got[name] == float(np.float32(want))  # float32 in the store, the same bits
            elif isinstance(want, list):
                np.testing.assert_array_equal(np.float32(got[name]), np.float32(want))
            else:
                assert got[name] == want and type(got[name]) is type(want)
    assert unpack_row(None) == dict.fromkeys(FIELDS)


def test_a_frame_of_vectors_keeps_order_and_marks_unknown_profiles():
    vectors = pack(_table()).to_pylist()
    frame = unpack_frame([vectors[2], None, vectors[0]], ["plays_28d", "genre_affinity", "is_kids"])
    assert list(frame.columns) == ["plays_28d", "genre_affinity", "is_kids"]
    assert frame["plays_28d"].tolist()[0::2] == [0.0, 3.0] and np.isnan(frame["plays_28d"][1])
    assert np.isnan(frame["is_kids"][0]) and frame["is_kids"][2] == 0.0
    assert frame["genre_affinity"][1] is None
    np.testing.assert_array_equal(frame["genre_affinity"][0], np.float32([0.1, 0.2, 0.7]))
    with pytest.raises(ValueError, match="not in the online profile vector"):
        unpack_frame(vectors, ["plays_7d"])


def test_with_vector_replaces_a_stale_column_and_packs_an_empty_table():
    table = with_vector(_table())
    again = with_vector(table.set_column(table.schema.get_field_index("plays_28d"), "plays_28d", pa.array([9, 9, 9])))
    assert again.column_names.count(VECTOR) == 1 and again[VECTOR][0].as_py()[0] == 9.0
    assert pack(_table().slice(0, 0)).to_pylist() == []
