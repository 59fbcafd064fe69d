"""Shared fixtures: a tiny hand-built catalog whose hard-rule answers are known."""

from __future__ import annotations

import os
from datetime import date

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pyarrow as pa
import pytest

from features.schema import TITLE_SCHEMA
from pathways.catalog import Catalog


def make_titles(n: int = 60) -> pa.Table:
    """n titles: every 5th is mature (3), every 7th licensed only in BR, the rest everywhere."""
    genres = ["Comedy", "Drama", "Animation", "Horror", "Documentary"]
    rows = []
    for i in range(n):
        tid = 100 + i
        rows.append(
            {
                "title_id": tid,
                "name": f"Title {tid}",
                "genres": [genres[i % len(genres)]],
                "cast": [f"Actor {i % 9}"],
                "release_date": date(2020 + i % 6, 1 + i % 12, 1),
                "runtime_min": 90,
                "maturity_level": 3 if i % 5 == 0 else (0 if i % 3 == 0 else 2),
                "regions": ["BR"] if i % 7 == 0 else ["US", "BR", "GB"],
                "artwork_ids": [0, 1, 2],
                "artwork_themes": ["genre:x", "mood:dark", "cast:y"],
            }
        )
    return pa.Table.from_pylist(rows, schema=TITLE_SCHEMA)


@pytest.fixture
def titles() -> pa.Table:
    return make_titles()


@pytest.fixture
def catalog(titles: pa.Table) -> Catalog:
    return Catalog.from_table(titles)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """One SQLite MLflow DB per test session (migrations cost seconds), configured globally."""
    from pathways import tracking

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    tracking.configure(uri, "tests")
    return uri


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):  # noqa: ANN001 - pytest hook
    _EXIT_STATUS.append(int(exitstatus))


def pytest_unconfigure(config):  # noqa: ANN001 - pytest hook
    """Skip interpreter teardown: duckdb's nanobind bindings (via Feast) print pages of "leaked
    instance" reports at exit, burying pytest's summary line. Everything is flushed first."""
    import sys

    if _EXIT_STATUS and os.environ.get("PATHWAYS_FAST_EXIT", "1") == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
