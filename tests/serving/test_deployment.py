"""The Serve shell's settings: replicas where the machine allows, the HAProxy ingress environment."""

from __future__ import annotations

import pytest

from pathways.config import PathwaysConfig
from serving import deployment


@pytest.mark.parametrize(("overrides", "cpus", "replicas"), [
    ({"stream.backend": "redis"}, 2, 2),  # several writers to the stream: two replicas, a crash is invisible
    ({"stream.backend": "redis"}, 1, 1),  # one core: one replica
    ({}, 2, 1),  # the embedded segment log takes one appending process
    ({"serving.num_replicas": 3}, 2, 3),  # explicit
])
def test_default_replicas(overrides, cpus, replicas) -> None:
    assert deployment.default_replicas(PathwaysConfig().with_overrides(overrides), cpus=cpus) == replicas


def test_haproxy_env_uses_a_private_short_path(monkeypatch) -> None:
    monkeypatch.setattr(deployment.shutil, "which", lambda name: "/usr/bin/haproxy-test")
    env = deployment.haproxy_env()
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_HAPROXY_BINARY_PATH"] == "/usr/bin/haproxy-test"
    # Serve adds a 56-character node id folder; HAProxy refuses socket paths over 97 characters.
    assert len(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]) + 57 <= 97
    assert not env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith("/tmp/haproxy-serve")


def test_haproxy_ingress_without_the_binary_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(deployment.shutil, "which", lambda name: None)
    monkeypatch.setattr(deployment.Path, "is_file", lambda self: False)
    with pytest.raises(ValueError, match="needs the haproxy binary"):
        deployment.haproxy_env()
