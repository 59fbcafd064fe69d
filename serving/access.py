"""Who may call what, and what a request body may be: the checks the HTTP layer runs before any work.

``AccessControl`` (built once per app from ``PathwaysConfig``) turns the ``Authorization`` header
into a ``serving.auth.Principal`` (401), counts the request against the subject's rate limit (429
with ``Retry-After``), checks the scope (403) and that every profile the request touches belongs
to the token's account (403; the profile -> account map is the live snapshot's). A profile the
snapshot does not know belongs to no account: only service and admin tokens may act on it, so a
member token cannot tell an unknown profile from another account's. When the snapshot's profile
records cannot be read (a Redis page store down), ownership cannot be checked either:
``OwnershipUnknown`` (503, ``Retry-After``), which the page route answers with the kids-safe
non-personalized page instead (nothing of the profile in it). With ``auth.enabled = false``
every request acts as an anonymous admin (development only).

``read_body_json`` parses a body (already capped by ``guards.BodyLimitMiddleware``) in a worker
thread, and ``check_events`` applies the request-level limits: events per request, distinct
profiles per request, timestamps that cannot be converted to UTC, and artwork impressions, which
only the server logs (``serving.impressions``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from pathways.config import AuthConfig, PathwaysConfig
from pathways.pagestore import PageStoreUnavailable
from serving.auth import (
    ADMIN,
    SCOPES,
    AuthError,
    Principal,
    RateLimiter,
    TokenVerifier,
    ensure_dev_secret,
    issue_token,
    load_secret,
)
from serving.guards import BadBody, parse_json

ANONYMOUS = Principal("anonymous", frozenset(SCOPES), None, service=True)
ARTWORK_IMPRESSION = "artwork_impression"


def auth_config(config: PathwaysConfig) -> AuthConfig:
    """``config.auth`` with ``secret_file`` defaulting to ``<data_dir>/secrets/jwt_secret``."""
    if config.auth.secret_file is not None:
        return config.auth
    return config.auth.model_copy(update={"secret_file": dev_secret_path(config)})


def dev_secret_path(config: PathwaysConfig) -> Path:
    return Path(config.data_dir) / "secrets" / "jwt_secret"


def dev_token(config: PathwaysConfig, subject: str, scopes: Iterable[str], account_id: int | None = None) -> str:
    """A token for development and tests, signed with the configured key, or with a development key
    created (mode 0600) at ``auth.secret_file`` (default ``<data_dir>/secrets/jwt_secret``)."""
    cfg = auth_config(config)
    try:
        secret = load_secret(cfg)
    except ValueError:
        assert cfg.secret_file is not None
        secret = ensure_dev_secret(Path(cfg.secret_file))
    return issue_token(cfg, secret, subject, scopes, account_id=account_id)


def with_service(config: PathwaysConfig, subject: str) -> PathwaysConfig:
    """``config`` with ``subject`` added to ``auth.service_subjects``."""
    subjects = tuple(dict.fromkeys((*config.auth.service_subjects, subject)))
    return config.with_overrides({"auth.service_subjects": list(subjects)})


class OwnershipUnknown(AuthError):
    """The token is valid but whether its account owns the profile cannot be said now (the
    snapshot's profile records are unreadable): 503, retry. The page route serves the kids-safe
    non-personalized page instead, which holds nothing of the profile."""


class AccessControl:
    """Authentication, rate limits, scopes and account binding for one app (see the module docstring)."""

    def __init__(self, config: PathwaysConfig, account_of: Callable[[int], int | None]) -> None:
        self.enabled = config.auth.enabled
        self.account_of = account_of
        self.max_profiles = config.serving.max_profiles_per_request
        self.retry_after_s = config.serving.retry_after_s
        if self.enabled:
            cfg = auth_config(config)
            self.verifier: TokenVerifier | None = TokenVerifier(cfg, load_secret(cfg))
            self.limiter: RateLimiter | None = RateLimiter(cfg.rate_limit, cfg.rate_limit_storage)
        else:
            self.verifier = self.limiter = None

    def check(self, authorization: str | None, scope: str, profile_ids: Iterable[int] = ()) -> Principal:
        """The caller, if it may use ``scope`` on ``profile_ids``; else ``AuthError`` (401/403/429)."""
        if self.verifier is None or self.limiter is None:
            return ANONYMOUS
        principal = self.verifier.verify(authorization)
        self.limiter.hit(principal.subject)
        principal.require(scope)
        self.may_act_for(principal, profile_ids)
        return principal

    def may_act_for(self, principal: Principal, profile_ids: Iterable[int]) -> None:
        """403 unless ``principal`` may act on every profile of ``profile_ids``."""
        if principal.service or ADMIN in principal.scopes:
            return
        try:
            accounts = [self.account_of(int(p)) for p in set(profile_ids)]
        except PageStoreUnavailable as exc:
            raise OwnershipUnknown(503, "profile records are unavailable, ownership cannot be checked; retry",
                                   self.retry_after_s) from exc
        principal.may_act_for(accounts)


async def read_body_json(request: Request) -> Any:
    """The request body as JSON, parsed in a worker thread; ``BadBody`` (400) when it is not."""
    raw = await request.body()
    return await run_in_threadpool(parse_json, raw)


def as_event_list(payload: Any, max_events: int) -> list[Any]:
    """One event or a list of them; 422 for an empty list or a non-object, 413 past ``max_events``."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise BadBody(422, "body: an empty list of events")
    if len(items) > max_events:
        raise BadBody(413, f"at most {max_events} events per request, got {len(items)}")
    return items


def check_events(events: Sequence[Any], principal: Principal, max_profiles: int) -> None:
    """Request-level checks on parsed events (``EventIn``/``HeartbeatIn``-like: ``profile_id``, ``ts``,
    ``event_type``): bounded distinct profiles (422), timestamps convertible to UTC (422),
    artwork impressions only from admin tokens (403)."""
    profiles = {int(e.profile_id) for e in events}
    if len(profiles) > max_profiles:
        raise BadBody(422, f"a request may touch at most {max_profiles} profiles, got {len(profiles)}")
    for i, e in enumerate(events):
        ts: datetime | None = getattr(e, "ts", None)
        if ts is not None:
            try:
                ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
            except (OverflowError, ValueError):
                raise BadBody(422, f"events[{i}].ts: {ts.isoformat()} is outside the representable UTC range") from None
        kind = getattr(getattr(e, "event_type", None), "value", None)
        if kind == ARTWORK_IMPRESSION and ADMIN not in principal.scopes:
            raise AuthError(403, "artwork_impression events are logged by the server from the pages it served; "
                                 "clients may not post them")
