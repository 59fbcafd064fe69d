"""Request guards that run before any handler: a body-size cap checked before parsing, and request ids.

``BodyLimitMiddleware`` is plain ASGI: a ``Content-Length`` over the cap is answered 413 before a
byte of the body is read, and a chunked body is read up to the cap (memory bounded by it) and refused past it, so a
22 MB upload never reaches ``json.loads``. ``RequestIdMiddleware`` gives every request an id (the
caller's ``X-Request-ID`` when it is short and printable, else a new one), echoes it in the
response header and puts it in the log records of the request. ``parse_json`` turns every way a
body can fail to parse (syntax, encoding, nesting too deep, numbers out of range) into one
``BadBody`` with a message, never an exception that would become a 500.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class BadBody(ValueError):
    """A request body that cannot be used; ``status`` is 400 (not JSON) or 413 (too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``: by ``Content-Length`` up front, or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _send_json(send, 400, {"error": "invalid Content-Length header"}, [])
                return
            if int(length) > self.max_bytes:
                await _send_json(send, 413, {"error": message}, [])
                return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the cap, answer 413 past it, else replay the body.
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunk = msg.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await _send_json(send, 413, {"error": message}, [])
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestIdMiddleware:
    """Every request gets an id: the caller's ``X-Request-ID`` when valid, else a fresh uuid4 hex."""

    def __init__(self, app: ASGIApp, echo: bool = True) -> None:
        self.app = app
        self.echo = echo  # False behind a proxy that sets the response header itself (Ray Serve's does)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self._bind(scope)
        token = request_id_var.set(rid)

        async def with_header(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = [*msg.get("headers", []), (REQUEST_ID_HEADER.encode(), rid.encode())]
            await send(msg)

        try:
            await self.app(scope, receive, with_header if self.echo else send)
        finally:
            request_id_var.reset(token)

    @staticmethod
    def _bind(scope: Scope) -> str:
        """The request's id (the caller's when valid, else a new one), stored in ``scope["state"]``."""
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        rid = given if _REQUEST_ID_OK.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        return rid


class RequestIdLogFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request) so log formats can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id (and the error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(), "request_id": getattr(record, "request_id", request_id_var.get())}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_json_logs(logger_names: tuple[str, ...] = ("serving", "bandits", "features")) -> None:
    """Structured logs for the serving process: JSON lines with the request id on stderr (idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if any(isinstance(h.formatter, JsonLogFormatter) for h in logger.handlers):
            continue
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())
        handler.addFilter(RequestIdLogFilter())
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON, or ``BadBody(400, why)``: syntax, encoding, nesting too deep for the parser,
    non-finite numbers or integers beyond 64 bits. Run it in a worker thread for large bodies."""
    if not raw.strip():
        raise BadBody(400, "body is empty; expected JSON")

    def bad_constant(name: str) -> Any:
        raise BadBody(400, f"body is not JSON: {name} is not a number")

    def bounded_int(text: str) -> int:
        if len(text.lstrip("-")) > 19 or not -(2**63) <= int(text) < 2**63:
            raise BadBody(400, f"body has an integer out of the 64-bit range: {text[:32]}")
        return int(text)

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=bad_constant, parse_int=bounded_int)
    except BadBody:
        raise
    except UnicodeDecodeError:
        raise BadBody(400, "body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadBody(400, f"body is not JSON: {exc}") from None
    except RecursionError:
        raise BadBody(400, "body is nested too deeply") from None
    except (OverflowError, ValueError) as exc:
        raise BadBody(400, f"body is not usable JSON: {type(exc).__name__}") from None
