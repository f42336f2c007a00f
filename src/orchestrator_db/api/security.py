"""Token authentication and request-body limits, as plain ASGI middleware.

Both run before FastAPI reads anything, so a request without the token or with an oversized body
costs the server almost nothing.

Authentication (only when the app has a token): a request proves it knows the token with an
``Authorization: Bearer <token>`` header, a ``?token=<token>`` query parameter (what browsers can
do for a WebSocket) or the ``orchestrator_db_token`` cookie. The cookie is set when a page is
opened with a valid ``?token=``, so the dashboard's own static files, fetches and WebSocket are
authenticated without the token sitting in every URL; it is HttpOnly and SameSite=Strict, so
other sites cannot make a browser use it (no CSRF). ``/healthz`` stays open for load-balancer
probes; it says nothing about the data.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from .errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "orchestrator_db_token"
OPEN_PATHS = frozenset({"/healthz"})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a complete JSON HTTP response."""
    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": data})


async def deny_websocket(scope: Scope, receive: Receive, send: Send, status: int,
                         body: dict[str, Any]) -> None:
    """Refuse a WebSocket handshake with an HTTP status when the server can, else close 1008."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        data = json.dumps(body).encode()
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "websocket.http.response.body", "body": data})
    else:
        await send({"type": "websocket.close", "code": 1008})


class TokenAuth:
    """Require the API token on every HTTP request and WebSocket except ``OPEN_PATHS``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    def check(self, scope: Scope) -> tuple[bool, bool]:
        """Return (authenticated, came-by-query-string)."""
        headers = _headers(scope)
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self._matches(value.strip()):
            return True, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(self._matches(v) for v in query.get("token", [])):
            return True, True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just not a token
            return False, False
        morsel = cookie.get(COOKIE)
        return (morsel is not None and self._matches(morsel.value)), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        ok, by_query = self.check(scope)
        if not ok:
            body = error_body(
                "Unauthorized",
                "this server requires its API token: send 'Authorization: Bearer <token>' "
                "(or ?token=<token> from a browser)",
            )
            if scope["type"] == "websocket":
                await deny_websocket(scope, receive, send, 401, body)
            else:
                await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])
            return
        if not (by_query and scope["type"] == "http"):
            await self.app(scope, receive, send)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        set_cookie = (f"{COOKIE}={self._token.decode()}; Path=/; HttpOnly; "
                      f"SameSite=Strict{secure}").encode("latin-1")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"set-cookie", set_cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class LocalOnly:
    """Without a token, answer only requests addressed to this machine by a loopback name.

    Loopback needs no token, but a web page the user visits can still make the browser talk to
    127.0.0.1. Two checks keep such pages out: the Host header must be a loopback name (a DNS
    rebinding attack sends the attacker's domain there), and a WebSocket's Origin, when a browser
    sends one, must be the server itself (no cross-site WebSocket hijacking; plain fetches are
    already kept from reading responses by the same-origin policy, and FastAPI parses JSON only
    from JSON requests, which a cross-site form cannot send).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES) -> None:
        self.app = app
        self.allowed = frozenset(h.lower().strip("[]") for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        problem = None
        if _host_name(host) not in self.allowed:
            problem = (f"host {host!r} is not allowed: without an API token this server only "
                       f"answers requests addressed to {', '.join(sorted(self.allowed))} "
                       "(embedders: create_app(allowed_hosts=[...]))")
        elif scope["type"] == "websocket" and "origin" in headers:
            origin = headers["origin"].lower()
            if origin.split("://", 1)[-1] != host.lower():
                problem = f"cross-origin WebSocket from {origin!r} refused"
        if problem is None:
            await self.app(scope, receive, send)
            return
        body = error_body("Forbidden", problem)
        if scope["type"] == "websocket":
            await deny_websocket(scope, receive, send, 403, body)
        else:
            await send_json(send, 403, body)


class BodyLimit:
    """Answer 413 to any request whose body is larger than ``max_bytes``.

    A declared Content-Length is checked before reading anything; a chunked body is read up to
    the limit and no further. The body is buffered (at most ``max_bytes``) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 path_limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})  # other limits for some paths (OTLP export)

    def _limit(self, path: str) -> int:
        """The limit of ``path``: its own, or its collection's ("/api/prompts" covers its ids)."""
        if path in self.path_limits:
            return self.path_limits[path]
        collection = path.rsplit("/", 1)[0]
        return self.path_limits.get(collection, self.max_bytes)

    async def _too_large(self, send: Send, limit: int) -> None:
        await send_json(send, 413, error_body(
            "PayloadTooLarge", f"request body is larger than {limit} bytes"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        declared = _headers(scope).get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await self._too_large(send, limit)
                    return
            except ValueError:
                await send_json(send, 400, error_body("BadRequest", "invalid Content-Length"))
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._too_large(send, limit)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# Access logs ------------------------------------------------------------------------------------
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&#\s]*")


class _RedactTokens(logging.Filter):
    """Replace ``?token=...`` in uvicorn's access log lines with ``?token=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and "token=" in a for a in record.args
        ):
            record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


_redactor = _RedactTokens()


def redact_tokens_in_access_log() -> None:
    """Keep the API token out of uvicorn's access log (idempotent)."""
    logger = logging.getLogger("uvicorn.access")
    if _redactor not in logger.filters:
        logger.addFilter(_redactor)


# Request targets ---------------------------------------------------------------------------------
def _is_utf8(part: bytes) -> bool:
    """Whether a piece of a URL is UTF-8 once percent-decoded."""
    if b"%" not in part:
        return True
    try:
        unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _bad_parameter(query: bytes) -> str | None:
    """The name of the first query parameter whose value is not UTF-8, if its name is."""
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name and _is_utf8(name) and not _is_utf8(value):
            return unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
    return None


def not_utf8(scope: Scope) -> dict[str, Any] | None:
    """The error body for a path or query string that is not UTF-8 once percent-decoded, else None.

    It names the query parameter at fault, when its value is, as other bad parameters' do.
    """
    query = scope.get("query_string") or b""
    if not _is_utf8(scope.get("raw_path") or b""):
        field = None
    elif not _is_utf8(query):
        field = _bad_parameter(query)
    else:
        return None
    return error_body("ValidationError", f"{field or 'the URL'} is not valid UTF-8 once "
                      "percent-decoded (a lone surrogate or a stray byte)", field)


async def refuse_websocket_frame(receive: Receive, send: Send, body: dict[str, Any]) -> None:
    """Accept a WebSocket, send ``body`` as its one message and close it with 1008.

    What ``/ws/events`` does with a bad parameter (ws.py): a client reads why in a message,
    where a handshake refused before ``websocket.accept`` reaches it as a bare HTTP 403.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(body)})
    await send({"type": "websocket.close", "code": 1008})


class StrictUtf8:
    """Refuse a request whose path or query string is not UTF-8 once percent-decoded.

    Starlette would decode ``%ED%B2%80`` (a lone surrogate's bytes) to U+FFFD and the filter
    would quietly match nothing: refused instead, like every other malformed input: 400 over
    HTTP, and over a WebSocket the error message and close 1008 of its other bad parameters.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = not_utf8(scope) if scope["type"] in ("http", "websocket") else None
        if error is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await send_json(send, 400, error)
        else:
            await refuse_websocket_frame(receive, send, error)
