"""Bearer tokens: a table of bad tokens with their exact status and message, scopes, accounts, rate limits."""

from __future__ import annotations

import time

import jwt
import pytest

from pathways.config import AuthConfig
from serving.auth import (
    ADMIN,
    EVENTS_WRITE,
    PAGES_READ,
    AuthError,
    RateLimiter,
    TokenVerifier,
    ensure_dev_secret,
    issue_token,
    load_secret,
)
from tests.redis_server import needs_redis

SECRET = "s" * 40
CFG = AuthConfig(service_subjects=("app-backend",))


def verifier() -> TokenVerifier:
    return TokenVerifier(CFG, SECRET)


def token(**claims: object) -> str:
    """A signed token; valid for a day, since the bad-token cases are made when the module is
    collected and a slow suite (12 minutes on a busy machine) outlived a 10-minute expiry."""
    base: dict[str, object] = {"sub": "account:7", "scope": PAGES_READ, "account_id": 7, "iat": int(time.time()),
                               "exp": int(time.time()) + 86_400, "iss": CFG.issuer, "aud": CFG.audience}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, SECRET, algorithm="HS256")


BAD = [
    (None, "missing bearer token (Authorization: Bearer <token>)"),
    ("", "missing bearer token (Authorization: Bearer <token>)"),
    ("Basic dXNlcjpwdw==", "the Authorization header must be 'Bearer <token>'"),
    ("Bearer ", "the Authorization header must be 'Bearer <token>'"),
    ("Bearer " + "a" * 5000, "token longer than 4096 characters"),
    ("Bearer not.a.jwt", "invalid token: Invalid header padding"),
    ("Bearer " + token(exp=int(time.time()) - 3600), "token expired"),
    ("Bearer " + jwt.encode({"sub": "account:7", "exp": 2**40}, "x" * 40, algorithm="HS256"),
     "invalid token: Signature verification failed"),
    ("Bearer " + jwt.encode({"sub": "account:7", "exp": 2**40, "iat": 1}, None, algorithm="none"),
     "invalid token: The specified alg value is not allowed"),
    ("Bearer " + token(aud="someone-else"), "invalid token: Audience doesn't match"),
    ("Bearer " + token(iss="evil"), "invalid token: Invalid issuer"),
    ("Bearer " + token(sub=None), 'invalid token: Token is missing the "sub" claim'),
    ("Bearer " + token(scope="pages:read root"), "invalid token: unknown scopes ['root']"),
    ("Bearer " + token(account_id=None), "invalid token: a member token needs 'account_id' (or the subject must "
                                         "be a configured service)"),
    ("Bearer " + token(account_id="7"), "invalid token: 'account_id' must be an integer"),
]


@pytest.mark.parametrize(("header", "message"), BAD)
def test_bad_tokens_are_401_with_a_clear_message(header: str | None, message: str) -> None:
    with pytest.raises(AuthError) as err:
        verifier().verify(header)
    assert (err.value.status, err.value.message) == (401, message)


def test_member_token_reads_only_its_account() -> None:
    p = verifier().verify("Bearer " + issue_token(CFG, SECRET, "account:7", [PAGES_READ], account_id=7))
    assert (p.subject, p.account_id, p.service) == ("account:7", 7, False)
    p.require(PAGES_READ)
    p.may_act_for([7, 7])
    with pytest.raises(AuthError) as err:
        p.may_act_for([7, 8])
    assert (err.value.status, err.value.message) == (403, "token may act only on profiles of its own account")
    with pytest.raises(AuthError) as err:
        p.require(EVENTS_WRITE)
    assert (err.value.status, err.value.message) == (403, "token lacks the 'events:write' scope")


def test_service_and_admin_tokens_act_for_any_account() -> None:
    service = verifier().verify("Bearer " + issue_token(CFG, SECRET, "app-backend", [PAGES_READ, EVENTS_WRITE]))
    assert service.service and service.account_id is None
    service.may_act_for([1, 2, None])
    admin = verifier().verify("Bearer " + issue_token(CFG, SECRET, "oncall", [ADMIN]))
    admin.require(EVENTS_WRITE)  # admin implies every scope
    admin.may_act_for([3])
    # the same subject, not configured as a service, is a member token without an account: refused
    other = TokenVerifier(AuthConfig(), SECRET)
    with pytest.raises(AuthError):
        other.verify("Bearer " + issue_token(CFG, SECRET, "app-backend", [PAGES_READ]))


def test_issue_token_refuses_unknown_scopes() -> None:
    with pytest.raises(ValueError, match="unknown scopes"):
        issue_token(CFG, SECRET, "account:1", ["pages:write"], account_id=1)


def test_rate_limit_per_subject_with_retry_after() -> None:
    limiter = RateLimiter("3/minute")
    for _ in range(3):
        limiter.hit("a")
    with pytest.raises(AuthError) as err:
        limiter.hit("a")
    assert err.value.status == 429 and err.value.retry_after_s is not None and 1 <= err.value.retry_after_s <= 60
    limiter.hit("b")  # another subject is not affected


def test_in_process_rate_limit_starts_no_thread_per_hit_and_prunes_expired_windows() -> None:
    import threading

    from serving.auth import PrunedMemoryStorage

    limiter = RateLimiter("5/second")
    storage = limiter._limiter.storage
    assert isinstance(storage, PrunedMemoryStorage)
    storage._prune_every_s = 0.05
    threads = threading.active_count()
    for _ in range(5):
        limiter.hit("a")
    with pytest.raises(AuthError):
        limiter.hit("a")  # counting is the stock moving window
    for i in range(300):
        limiter.hit(f"s{i}")
    assert threading.active_count() == threads  # the stock storage starts a Timer thread per hit
    time.sleep(1.3)  # the window passes, the pruner drops every expired entry
    assert storage.events == {}
    limiter.hit("a")  # allowed again


def test_secret_from_env_or_file_and_never_short(tmp_path, monkeypatch) -> None:
    path = tmp_path / "secrets" / "jwt"
    cfg = AuthConfig(secret_env="PW_TEST_SECRET", secret_file=path)
    monkeypatch.delenv("PW_TEST_SECRET", raising=False)
    with pytest.raises(ValueError, match="no signing key of at least 32 characters"):
        load_secret(cfg)
    made = ensure_dev_secret(path)
    assert load_secret(cfg) == made and (path.stat().st_mode & 0o777) == 0o600
    assert ensure_dev_secret(path) == made  # idempotent
    monkeypatch.setenv("PW_TEST_SECRET", "e" * 32)
    assert load_secret(cfg) == "e" * 32


def test_config_rejects_a_bad_rate_limit() -> None:
    with pytest.raises(ValueError, match="auth.rate_limit"):
        AuthConfig(rate_limit="lots")


@needs_redis
def test_rate_limit_shared_in_redis_and_failing_open_when_it_is_down(tmp_path) -> None:
    from tests.redis_server import free_port, start_redis, stop_redis

    proc, port = start_redis(tmp_path)
    try:
        a, b = RateLimiter("2/minute", f"redis://127.0.0.1:{port}/1"), RateLimiter("2/minute", f"redis://127.0.0.1:{port}/1")
        a.hit("s")
        b.hit("s")  # another replica: the same count
        with pytest.raises(AuthError) as err:
            a.hit("s")
        assert err.value.status == 429
    finally:
        stop_redis(proc)
    RateLimiter("2/minute", f"redis://127.0.0.1:{free_port()}/1").hit("s")  # nothing there: let through


def test_a_verified_token_is_not_decoded_again_until_it_expires(monkeypatch):
    v = verifier()
    tok = token(exp=int(time.time()) + 600)
    first = v.verify("Bearer " + tok)
    calls: list[str] = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append("decode") or real_decode(*a, **k))
    assert v.verify("Bearer " + tok) == first and calls == []  # served from the cache
    with pytest.raises(AuthError):
        v.verify("Bearer " + tok[:-2] + "xx")  # another string: checked, refused
    calls.clear()
    real_time, late = time.time, time.time() + 600 + CFG.leeway_s + 1  # past exp + leeway: checked again
    monkeypatch.setattr(time, "time", lambda: late)
    v.verify("Bearer " + tok)
    assert calls == ["decode"]
    monkeypatch.setattr(time, "time", real_time)


def test_a_cached_token_is_refused_once_it_expires():
    v = TokenVerifier(CFG.model_copy(update={"leeway_s": 0}), SECRET)
    exp = int(time.time()) + 1
    tok = token(exp=exp)
    v.verify("Bearer " + tok)
    time.sleep(max(0.0, exp + 1.05 - time.time()))
    with pytest.raises(AuthError, match="token expired"):
        v.verify("Bearer " + tok)


def test_the_verified_token_cache_is_bounded():
    v = TokenVerifier(CFG.model_copy(update={"verified_tokens_cached": 3}), SECRET)
    for i in range(10):
        v.verify("Bearer " + token(iat=int(time.time()) - i))
    assert len(v._verified) == 3
