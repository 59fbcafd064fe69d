"""Fixtures over the tiny snapshot of ``snapshot_fixtures`` (published per test under tmp_path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pathways.config import PathwaysConfig
from serving.logic import PathwaysService, build_service
from serving.playback import InMemoryPlaybackStore
from tests.serving.snapshot_fixtures import api_client, make_config, publish


@pytest.fixture
def config(tmp_path: Path) -> PathwaysConfig:
    cfg = make_config(tmp_path)
    publish(cfg.snapshots_dir, "v1", cfg)
    return cfg


@pytest.fixture
def store() -> InMemoryPlaybackStore:
    return InMemoryPlaybackStore()


@pytest.fixture
def service(config: PathwaysConfig, store: InMemoryPlaybackStore) -> PathwaysService:
    return build_service(config, playback=store, background_reload=False)


@pytest.fixture
def client(service: PathwaysService) -> TestClient:
    return api_client(service)
