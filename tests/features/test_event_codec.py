"""The event stream's codec (``features.stream.base``): what a log record holds and reads back as."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np

from features.stream.base import decode_event, encode_event


def test_round_trip_keeps_values_and_turns_ts_into_epoch_ms() -> None:
    ts = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=timezone(timedelta(hours=2)))
    event = {"event_id": "é-1", "event_type": "play", "ts": ts, "profile_id": 2**63 - 1, "title_id": 7,
             "fraction_watched": 1e-7, "query": "naïve \"quote\"", "row_index": None}
    data = encode_event(event)
    back = decode_event(data)
    assert back["ts"] == int(ts.astimezone(UTC).timestamp() * 1000) == 1772361015250
    assert {k: v for k, v in back.items() if k != "ts"} == {k: v for k, v in event.items() if k != "ts"}
    assert json.loads(data) == back  # plain JSON: any reader (Redis tools, Kafka) can read a record
    assert b'", "' not in data and b'": ' not in data  # compact: no separator spaces


def test_naive_ts_is_utc_and_epoch_ms_passes_through() -> None:
    naive = datetime(2026, 1, 1, 0, 0, 0)
    assert decode_event(encode_event({"event_id": "a", "ts": naive}))["ts"] == 1767225600000
    assert decode_event(encode_event({"event_id": "a", "ts": 1767225600123}))["ts"] == 1767225600123


def test_numpy_scalars_are_written_as_numbers() -> None:
    back = decode_event(encode_event({"event_id": "a", "profile_id": np.int64(5), "position": np.int32(3),
                                      "propensity": np.float64(0.25)}))
    assert back == {"event_id": "a", "profile_id": 5, "position": 3, "propensity": 0.25}
    assert isinstance(back["profile_id"], int) and isinstance(back["propensity"], float)


def test_records_of_the_json_module_still_read() -> None:
    """A log written before the codec moved to orjson may hold NaN, which strict JSON refuses."""
    old = json.dumps({"event_id": "a", "fraction_watched": float("nan"), "ts": 1}, separators=(",", ":")).encode()
    back = decode_event(old)
    assert back["event_id"] == "a" and np.isnan(back["fraction_watched"])
    assert decode_event(old.decode())["ts"] == 1  # str records (Redis without decoding) as well
