"""Redis Streams backend against a real ``redis-server`` started here on a free port.

The conformance suite, plus: a crashed consumer's pending entries are claimed by another, and a
Redis that is down is ``StreamUnavailable`` (the API's 503), never a silent drop.
"""

from __future__ import annotations

import time
import uuid

import pytest

from features.stream import StreamUnavailable
from tests.features.stream_conformance import StreamConformance, ev
from tests.redis_server import free_port, needs_redis, start_redis, stop_redis

pytestmark = needs_redis


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(proc)


def _stream(url: str, key: str, **kwargs):
    from features.stream.redis_stream import RedisEventStream

    return RedisEventStream(url, key, **kwargs)


class TestRedisStream(StreamConformance):
    @pytest.fixture
    def make_stream(self, redis_url: str):
        key = f"test:{uuid.uuid4().hex}"
        return lambda: _stream(redis_url, key)

    @pytest.fixture
    def full_stream(self, redis_url: str):
        return _stream(redis_url, f"test:{uuid.uuid4().hex}", max_backlog_events=4)


def test_a_dead_consumers_pending_entries_are_claimed(redis_url: str) -> None:
    key = f"test:{uuid.uuid4().hex}"
    stream = _stream(redis_url, key, claim_idle_s=0.05)
    stream.append([ev(i) for i in range(3)])
    assert len(stream.read("g", "dead", 10)) == 3  # read, never acknowledged
    time.sleep(0.1)
    other = _stream(redis_url, key, claim_idle_s=0.05)
    got = other.read("g", "alive", 10)
    assert [e.event_id for e in got] == ["e0", "e1", "e2"]
    other.commit("g", [e.position for e in got])
    assert other.lag("g") == 0


def test_redis_down_is_unavailable(tmp_path) -> None:
    stream = _stream(f"redis://127.0.0.1:{free_port()}/0", "test:down")
    with pytest.raises(StreamUnavailable):
        stream.append([ev(1)])
    with pytest.raises(StreamUnavailable):
        stream.read("g", "c", 10)
