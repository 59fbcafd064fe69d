"""Access control for the API: signed bearer tokens (JWT) with scopes, account binding and rate limits.

A token is a JWT signed with the configured algorithm (HS256 by default; the key comes from an
environment variable or a file named in ``AuthConfig``, never from the snapshot or a log line).
Its claims:

| claim | meaning |
| --- | --- |
| ``sub`` | the subject: ``account:<id>`` for a member's token, or a configured service name |
| ``scope`` | space-separated scopes from ``SCOPES`` (``pages:read``, ``events:write``, ``admin``) |
| ``account_id`` | for account tokens: the only account whose profiles the token may read or write |
| ``exp``, ``iat``, ``iss``, ``aud`` | checked by PyJWT (expiry required; issuer/audience when configured) |

A service token (for the app backend) is one whose ``sub`` is listed in ``AuthConfig.service_subjects``:
it may act on any profile within its scopes. ``admin`` implies every scope. Rate limits are per
subject (``limits``' moving window), so one noisy caller cannot starve the others.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jwt
from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from pathways.config import AuthConfig

log = logging.getLogger(__name__)

PAGES_READ = "pages:read"
EVENTS_WRITE = "events:write"
ADMIN = "admin"
SCOPES = frozenset({PAGES_READ, EVENTS_WRITE, ADMIN})
MAX_TOKEN_CHARS = 4096


class AuthError(Exception):
    """A request the caller may not make: ``status`` is 401 (who are you), 403 (not yours) or 429."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, its scopes and, for a member's token, the account."""

    subject: str
    scopes: frozenset[str]
    account_id: int | None
    service: bool

    def require(self, scope: str) -> None:
        """Raise 403 unless the token carries ``scope`` (or ``admin``)."""
        if scope not in self.scopes and ADMIN not in self.scopes:
            raise AuthError(403, f"token lacks the '{scope}' scope")

    def may_act_for(self, account_ids: Iterable[int | None]) -> None:
        """Raise 403 unless every account in ``account_ids`` is this token's (services and admins: any)."""
        if self.service or ADMIN in self.scopes:
            return
        foreign = {a for a in account_ids if a != self.account_id}
        if foreign:
            raise AuthError(403, "token may act only on profiles of its own account")


def load_secret(config: AuthConfig) -> str:
    """The signing key: the environment variable ``config.secret_env``, else ``config.secret_file``."""
    value = os.environ.get(config.secret_env, "")
    if not value and config.secret_file is not None and Path(config.secret_file).is_file():
        value = Path(config.secret_file).read_text().strip()
    if len(value) < 32:
        where = f"${config.secret_env}" + (f" or {config.secret_file}" if config.secret_file else "")
        raise ValueError(f"auth is enabled but no signing key of at least 32 characters is set in {where}")
    return value


def ensure_dev_secret(path: Path) -> str:
    """Create (mode 0600) or read a random development signing key at ``path``."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def issue_token(
    config: AuthConfig,
    secret: str,
    subject: str,
    scopes: Iterable[str],
    account_id: int | None = None,
    ttl_s: int | None = None,
    now: float | None = None,
) -> str:
    """A signed token for ``subject`` with ``scopes`` (unknown scopes are an error)."""
    scopes = sorted(set(scopes))
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; known: {sorted(SCOPES)}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": subject, "scope": " ".join(scopes), "iat": issued,
                                 "exp": issued + (config.token_ttl_s if ttl_s is None else ttl_s)}
    if account_id is not None:
        claims["account_id"] = int(account_id)
    if config.issuer:
        claims["iss"] = config.issuer
    if config.audience:
        claims["aud"] = config.audience
    return jwt.encode(claims, secret, algorithm=config.algorithm)


class TokenVerifier:
    """Turns an ``Authorization`` header into a ``Principal``, or raises ``AuthError`` (401)."""

    def __init__(self, config: AuthConfig, secret: str) -> None:
        self.config = config
        self._secret = secret
        self._services = frozenset(config.service_subjects)
        # token -> (principal, time it stops being valid): a checked signature is not checked again
        # on every request; bounded (``verified_tokens_cached``), oldest dropped first.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "the Authorization header must be 'Bearer <token>'")
        token = token.strip()
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(401, f"token longer than {MAX_TOKEN_CHARS} characters")
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known[1]:
                return known[0]
            del self._verified[token]
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[self.config.algorithm],
                audience=self.config.audience or None, issuer=self.config.issuer or None,
                leeway=self.config.leeway_s, options={"require": ["exp", "sub", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        principal = self._principal(claims)
        if self.config.verified_tokens_cached:
            # pyjwt accepts a token until exp + leeway; so does the cache
            self._verified[token] = (principal, float(claims["exp"]) + self.config.leeway_s)
            while len(self._verified) > self.config.verified_tokens_cached:
                self._verified.popitem(last=False)
        return principal

    def _principal(self, claims: dict[str, object]) -> Principal:
        subject, scope = claims.get("sub"), claims.get("scope", "")
        if not isinstance(subject, str) or not subject or not isinstance(scope, str):
            raise AuthError(401, "invalid token: 'sub' and 'scope' must be strings")
        scopes = frozenset(scope.split())
        if scopes - SCOPES:
            raise AuthError(401, f"invalid token: unknown scopes {sorted(scopes - SCOPES)}")
        service = subject in self._services
        account = claims.get("account_id")
        if account is not None and (isinstance(account, bool) or not isinstance(account, int)):
            raise AuthError(401, "invalid token: 'account_id' must be an integer")
        if not service and account is None and ADMIN not in scopes:
            raise AuthError(401, "invalid token: a member token needs 'account_id' (or the subject must be a configured service)")
        return Principal(subject, scopes, account, service)


class PrunedMemoryStorage(MemoryStorage):
    """``limits``' in-process storage, its expired windows pruned by ONE daemon thread every
    ``prune_every_s``. The stock storage starts a new 10 ms ``threading.Timer`` thread on every hit
    whose previous timer has run out: under load, a thread created about every 10 ms per replica,
    each competing for the GIL with the page threads (measured: ~5% of a replica's CPU). Counting
    is the stock code; only when expired entries are dropped changes (windows are checked against
    the clock on every hit, so pruning later never lets a request through that the limit refuses)."""

    def __init__(self, prune_every_s: float = 0.5) -> None:
        super().__init__()
        self._prune_every_s = prune_every_s
        self._pruner = threading.Thread(target=self._prune_forever, name="rate-limit-prune", daemon=True)
        self._pruner.start()

    def _MemoryStorage__schedule_expiry(self) -> None:  # the stock per-hit timer: replaced by the pruner
        return None

    def _prune_forever(self) -> None:
        while True:
            time.sleep(self._prune_every_s)
            try:
                self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
                for key in [k for k, v in list(self.events.items()) if not v]:  # subjects gone quiet: no entry kept
                    with self.locks[key]:
                        if not self.events.get(key):
                            self.events.pop(key, None)
                            self.locks.pop(key, None)
            except Exception as exc:  # noqa: BLE001 - a failed prune is retried at the next tick
                log.warning("rate limit storage prune failed: %s", exc)


class RateLimiter:
    """Requests per token subject in a moving window (``AuthConfig.rate_limit``, e.g. ``"50/second"``),
    counted in ``storage`` (a ``limits`` storage URI: ``memory://`` per process, ``redis://...`` shared).
    When the storage cannot be reached the request is let through (logged): a limiter outage must
    not become an API outage."""

    def __init__(self, rate: str, storage: str = "memory://") -> None:
        self._item = parse(rate)
        self._limiter = MovingWindowRateLimiter(PrunedMemoryStorage() if storage == "memory://" else storage_from_string(storage))

    def hit(self, subject: str) -> None:
        """Count one request for ``subject``; raise 429 with ``retry_after_s`` when over the limit."""
        try:
            allowed = self._limiter.hit(self._item, subject)
        except Exception as exc:  # noqa: BLE001 - fail open: the storage (Redis) is down
            log.warning("rate limit storage unavailable, request let through: %s", type(exc).__name__)
            return
        if allowed:
            return
        reset = self._limiter.get_window_stats(self._item, subject).reset_time
        raise AuthError(429, f"rate limit of {self._item} exceeded for this token",
                        retry_after_s=max(1, int(reset - time.time() + 0.999)))
