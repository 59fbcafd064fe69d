"""A tiny published snapshot whose right answers are known.

Catalog: 40 titles (ids 1..40), runtime 100 min, artwork ids ``[10*t, 10*t+1, 10*t+2]``.
- title 7 is licensed only in BR (unlicensed in US);
- titles 5, 10, ..., 40 are mature (3); title 40 is adult (4); titles 1..4, 6, 8, 9 are "all" (0);
  the rest are teen (2).
Profiles: 1 adult US (max 4), 2 kids US (max 1), 3 adult BR (max 3), 4 adult US with no page.
Stored pages deliberately hold forbidden titles (a mature title on the kids page, the BR-only
title on US pages) and titles repeated across rows: serving must clean them up.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa

from experiments.allocation import assign_cell
from features.schema import PROFILE_SCHEMA, TITLE_SCHEMA
from pathways.config import PathwaysConfig
from pathways.pagestore import PAGES_SQLITE
from pathways.profilerecords import profile_rows, write_profiles
from pathways.snapshot import PROFILES, TITLES, SnapshotWriter
from pathways.types import Page, Row, TitleCard

N_TITLES = 40
RUNTIME_S = 100 * 60.0
BR_ONLY = 7
ADULT, KID, BR_ADULT, NO_PAGE = 1, 2, 3, 4


def maturity_of(t: int) -> int:
    if t == 40:
        return 4
    if t % 5 == 0:
        return 3
    return 0 if t in (1, 2, 3, 4, 6, 8, 9) else 2


def titles_table() -> pa.Table:
    rows = [
        {
            "title_id": t, "name": f"Title {t}", "genres": ["Drama"], "cast": ["A"],
            "release_date": date(2020, 1, 1 + t % 28), "runtime_min": 100, "maturity_level": maturity_of(t),
            "regions": ["BR"] if t == BR_ONLY else ["US", "BR"],
            "artwork_ids": [10 * t, 10 * t + 1, 10 * t + 2], "artwork_themes": ["genre:Drama", "mood:dark", "cast:A"],
        }
        for t in range(1, N_TITLES + 1)
    ]
    return pa.Table.from_pylist(rows, schema=TITLE_SCHEMA)


def profiles_table() -> pa.Table:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"profile_id": ADULT, "account_id": 10, "is_kids": False, "region": "US", "max_maturity_level": 4, "devices": ["tv"], "created_at": created},
        {"profile_id": KID, "account_id": 10, "is_kids": True, "region": "US", "max_maturity_level": 1, "devices": ["tv"], "created_at": created},
        {"profile_id": BR_ADULT, "account_id": 11, "is_kids": False, "region": "BR", "max_maturity_level": 3, "devices": ["web"], "created_at": created},
        {"profile_id": NO_PAGE, "account_id": 12, "is_kids": False, "region": "US", "max_maturity_level": 4, "devices": ["web"], "created_at": created},
    ]
    return pa.Table.from_pylist(rows, schema=PROFILE_SCHEMA)


def card(t: int) -> TitleCard:
    return TitleCard(t, f"Title {t}", maturity_of(t), score=1.0 / t, artwork_id=10 * t)


def stored_page(profile_id: int | None, region: str, level: int, n_rows: int = 12, source: str = "als") -> Page:
    """Rows of 8 consecutive titles, shifted by 3 per row (so rows overlap), starting at title 1."""
    rows = [
        Row(f"{source}:{k}", f"Row {k}", source, f"evidence {k}", tuple(card(1 + (3 * k + j) % N_TITLES) for j in range(8)))
        for k in range(n_rows)
    ]
    return Page(profile_id, region, level, tuple(rows), personalized=profile_id is not None)


def publish(root: Path, version: str, config: PathwaysConfig, *, with_cw: bool = True, fallback_keys=None,
            profile_records: bool = True) -> None:
    """A snapshot of ADULT, KID and BR_ADULT's pages; ``profile_records=False``: the layout before the
    page store held profile records (serving reads ``profiles.parquet``)."""
    writer = SnapshotWriter(root, version)
    pages = []
    for pid, region, level in ((ADULT, "US", 4), (KID, "US", 1), (BR_ADULT, "BR", 3)):
        page = stored_page(pid, region, level)
        if with_cw and pid == ADULT:  # the nightly's continue-watching row: title 12 in progress
            cw = Row("continue_watching", "Continue watching", "continue_watching", "", (card(12),))
            page = Page(pid, region, level, (cw, *page.rows), True)
        pages.append((pid, assign_cell(pid, config.experiment), page))
    writer.write_pages(pages)
    keys = fallback_keys if fallback_keys is not None else [(r, m) for r in ("US", "BR") for m in range(5)]
    writer.write_fallbacks({k: stored_page(None, k[0], k[1], n_rows=6, source="trending") for k in keys})
    writer.write_table(TITLES, titles_table())
    writer.write_table(PROFILES, profiles_table())
    if profile_records:
        write_profiles(writer.staging / PAGES_SQLITE, *profile_rows(profiles_table()))
    writer.publish({"counts": {"profiles": 3}})


TEST_SERVICE = "test-backend"
TEST_SECRET = "test-signing-key-" + "k" * 40
# Generous budgets: tests run on 2 shared cores; the budget tests set their own.
TEST_BUDGETS = {"serving.deadline_ms": 10_000.0, "serving.personalize_budget_ms": 2000.0,
                "serving.snapshot_read_budget_ms": 2000.0, "serving.artwork_budget_ms": 2000.0}


def make_config(tmp_path: Path, **overrides) -> PathwaysConfig:
    """A config under ``tmp_path/data`` with a test signing key there and ``TEST_SERVICE`` a service subject."""
    base = {"serving.snapshot_poll_s": 0.001, "page.row_length": 8, **TEST_BUDGETS,
            "auth.service_subjects": [TEST_SERVICE]}
    config = PathwaysConfig(data_dir=tmp_path / "data").with_overrides({**base, **overrides})
    secret = Path(config.data_dir) / "secrets" / "jwt_secret"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(TEST_SECRET)
    secret.chmod(0o600)
    return config


def token(config: PathwaysConfig, subject: str = TEST_SERVICE, scopes=("pages:read", "events:write"),
          account_id: int | None = None, ttl_s: int | None = None) -> str:
    """A token signed with the test key (a service token by default)."""
    from serving.access import auth_config
    from serving.auth import issue_token

    return issue_token(auth_config(config), TEST_SECRET, subject, scopes, account_id=account_id, ttl_s=ttl_s)


def auth_headers(config: PathwaysConfig, **kwargs) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(config, **kwargs)}"}


def api_client(service, **token_kwargs):
    """A TestClient over ``create_app(service)`` sending a test token (the service token by default)."""
    from fastapi.testclient import TestClient

    from serving.api import create_app

    return TestClient(create_app(service), headers=auth_headers(service.pages.config, **token_kwargs))



def get_page(client, profile_id: int, **params) -> dict:
    """GET the page (asserting 200) as a dict."""
    r = client.get("/api/v1/pathways", params={"profile_id": profile_id, **params})
    assert r.status_code == 200, r.text
    return r.json()


def title_ids(page: dict, first_rows: int | None = None) -> list[int]:
    rows = page["rows"] if first_rows is None else page["rows"][:first_rows]
    return [t["title_id"] for row in rows for t in row["titles"]]
