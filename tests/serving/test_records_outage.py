"""The page store's profile records unreadable (a Redis outage): "cannot say" is not "unknown".

Access binding and event intake must not read it as "this profile belongs to no one": a member's
page request gets the kids-safe non-personalized page of the default region (nothing of the
profile in it), not a 403; events get a retryable 503 with nothing appended, not a rejection as
unknown profiles."""

from __future__ import annotations

import pytest

from features.schema import KIDS_MAX_MATURITY
from pathways.pagestore import PageStoreUnavailable
from serving.access import AccessControl, OwnershipUnknown
from serving.auth import ADMIN
from serving.logic import OWNERSHIP_UNVERIFIED, build_service
from serving.playback import InMemoryPlaybackStore
from serving.snapshots import StoreProfiles
from tests.serving.snapshot_fixtures import ADULT, BR_ADULT, api_client, auth_headers, make_config, publish

MEMBER = {"subject": "account:10", "account_id": 10}  # owns ADULT, not BR_ADULT (account 11)


class _Outage:
    """Switches the live snapshot's profile records between readable and not."""

    def __init__(self, service) -> None:
        self.profiles = service.pages.snapshots.state().snapshot.profiles
        assert isinstance(self.profiles, StoreProfiles)
        self.read = self.profiles.reader.profile
        self.down = False
        self.profiles.reader.profile = self._profile

    def _profile(self, profile_id: int):
        if self.down:
            raise PageStoreUnavailable("redis: connection refused")
        return self.read(profile_id)


@pytest.fixture
def outage(tmp_path):
    config = make_config(tmp_path)
    publish(config.snapshots_dir, "v1", config)
    service = build_service(config, playback=InMemoryPlaybackStore(), background_reload=False)
    return service, _Outage(service)


def test_a_member_gets_the_kids_safe_page_not_a_403_while_records_are_unreadable(outage) -> None:
    service, down = outage
    member = api_client(service, **MEMBER)
    assert member.get("/api/v1/pathways", params={"profile_id": ADULT}).json()["personalized"] is True
    down.down = True
    r = member.get("/api/v1/pathways", params={"profile_id": BR_ADULT})  # another account's: nothing of it
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["personalized"] is False and page["reason"] == OWNERSHIP_UNVERIFIED
    assert page["profile"] == {"profile_id": BR_ADULT, "region": service.pages.config.serving.default_region,
                               "max_maturity_level": KIDS_MAX_MATURITY, "is_kids": None}
    assert page["rows"] and max(t["maturity_level"] for row in page["rows"] for t in row["titles"]) <= KIDS_MAX_MATURITY
    down.down = False  # readable again: the records decide again
    assert member.get("/api/v1/pathways", params={"profile_id": BR_ADULT}).status_code == 403


@pytest.mark.parametrize("who", ["member", "service"])
def test_events_get_a_retryable_503_and_nothing_is_appended(outage, who, monkeypatch) -> None:
    service, down = outage
    client = api_client(service, **(MEMBER if who == "member" else {}))
    appended: list[object] = []
    append = service.events.stream.append
    monkeypatch.setattr(service.events.stream, "append", lambda *a, **k: appended.append(a) or append(*a, **k))
    down.down = True
    r = client.post("/api/v1/events", json=[{"event_type": "play", "profile_id": ADULT, "title_id": 3,
                                             "fraction_watched": 0.5}])
    assert r.status_code == 503 and r.headers["Retry-After"] == str(service.pages.config.serving.retry_after_s
                                                                      if who == "member" else service.pages.config.stream.retry_after_s)
    assert "retry" in r.json()["error"]
    assert appended == []
    down.down = False
    assert client.post("/api/v1/events", json=[{"event_type": "play", "profile_id": ADULT, "title_id": 3,
                                                "fraction_watched": 0.5}]).status_code == 202
    assert appended


def test_access_control_tells_cannot_say_from_not_yours(tmp_path) -> None:
    config = make_config(tmp_path, **{"serving.retry_after_s": 3})

    def unreadable(profile_id: int) -> int | None:
        raise PageStoreUnavailable("down")

    access = AccessControl(config, unreadable)
    member = access.verifier.verify(auth_headers(config, **MEMBER)["Authorization"])
    with pytest.raises(OwnershipUnknown) as err:
        access.may_act_for(member, [ADULT])
    assert (err.value.status, err.value.retry_after_s) == (503, 3)
    service = access.verifier.verify(auth_headers(config)["Authorization"])
    access.may_act_for(service, [ADULT])  # services and admins never needed the records
    assert service.service and ADMIN not in member.scopes
