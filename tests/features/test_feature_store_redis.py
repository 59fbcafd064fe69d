"""The same store on Redis: materialize, online read, push, and unavailability when Redis stops.

Needs the ``redis-server`` binary (Debian: ``apt-get install redis-server``); the test starts its
own instance on a free port and stops it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import timedelta

import pytest

from features.compute import compute_features, day_end
from features.history import PlaybackState
from pathways.config import FeatureConfig
from tests.conftest import make_titles
from tests.features.builders import T0, event, events_table, make_profiles

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed: apt-get install redis-server (.ci/run installs it) lifts this"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port, proc
    proc.terminate()
    proc.wait(timeout=10)


def test_redis_online_store_round_trip_and_outage(redis_port, tmp_path):
    from features.online import OnlineFeatureClient, OnlineStoreUnavailable
    from features.store import FeatureStoreManager

    port, proc = redis_port
    rows = [event(i, "play", 1 + i % 3, 100 + i % 5, 3.0 * i, fraction_watched=0.5) for i in range(30)]
    days = [T0.date() + timedelta(days=d) for d in range(4)]
    frames = compute_features(events_table(rows), make_titles(), make_profiles(), days)
    config = FeatureConfig(project="pathways_redis", online_store="redis", redis_connection=f"127.0.0.1:{port}")
    manager = FeatureStoreManager(config, tmp_path / "repo")
    manager.write_features(frames)
    manager.apply()
    manager.materialize(day_end(days[-1]))

    last = frames.profiles[frames.profiles["event_timestamp"] == frames.profiles["event_timestamp"].max()]
    want = last.set_index("profile_id").loc[[1, 2, 6], "plays_28d"].tolist()
    assert manager.online_profiles([1, 2, 6])["plays_28d"].tolist() == want

    client = OnlineFeatureClient(manager.repo_dir)
    state = PlaybackState({103: (0.4, 1_790_000_000.0)}, frozenset({100, 104}))
    client.write_playback_state(2, state)
    assert client.playback_state(2) == state

    proc.terminate()
    proc.wait(timeout=10)
    started = time.monotonic()
    with pytest.raises(OnlineStoreUnavailable) as info:
        client.playback_state(2)
    assert info.value.__cause__ is not None
    # redis-py's default retries back off for seconds; the client must fail at once instead.
    assert time.monotonic() - started < 2.0
