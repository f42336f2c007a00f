"""``create_app``: the FastAPI application, its lifespan, middleware and routes.

One process holds one ``DatabaseManager`` and one ``ChangeFeed``, opened by the lifespan and
shared by every request and WebSocket client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import setting
from ..database import DatabaseManager
from ..errors import OrchestratorDBError
from ..events import ChangeFeed
from ..maintenance import apply_retention_policy, retention_days
from ..otlp import OtlpReceiver
from ..version import __version__
from . import errors, otlp, routes, ws
from .limits import body_limits
from .schemas import Health
from .security import (
    LOOPBACK_NAMES,
    BodyLimit,
    LocalOnly,
    StrictUtf8,
    TokenAuth,
    redact_tokens_in_access_log,
)

TOKEN_ENV = "ORCHESTRATOR_API_TOKEN"
logger = logging.getLogger("orchestrator_db.api")
DEFAULT_HOST = "127.0.0.1"
# Bodies of routes that take no record; a record route admits its largest record (limits.py).
DEFAULT_MAX_BODY_BYTES = 1_000_000
# OTLP exporters send up to 512 spans a request, prompts and responses included, uncompressed
# by default: 1 MB would refuse ordinary batches.
DEFAULT_MAX_OTLP_BODY_BYTES = 32 * 1024 * 1024
OTLP_PATHS = ("/v1/traces", "/v1/logs")
STATIC_DIR = resources.files("orchestrator_db") / "api" / "static"
SWAGGER = "/static/swagger"  # Swagger UI's files, vendored (static/swagger/README.md)
# The dashboard runs only its own scripts and talks only to this server: even if some LLM output
# slipped into the DOM as HTML, an injected script or remote resource would not run or load.
DASHBOARD_HEADERS = {
    "cache-control": "no-cache",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


TOKEN_FORM = re.compile(r"[A-Za-z0-9._~+/=-]+")


class ApiConfigError(OrchestratorDBError):
    """The service is configured unsafely (e.g. exposed to the network without a token)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost, or "" (all interfaces)
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the app requires: explicit › ORCHESTRATOR_API_TOKEN; mandatory off loopback.

    A token that is configured is always enforced, on loopback too.
    """
    token = token if token is not None else setting(TOKEN_ENV)
    if token is not None and not token.strip():
        raise ApiConfigError(f"the API token is empty; set {TOKEN_ENV} to a long random string")
    if token is not None and not TOKEN_FORM.fullmatch(token):
        # It travels in a header, a query string and a cookie: outside this alphabet (RFC 6750's
        # b64token) it breaks the cookie or fails to compare, so refuse it here, without echoing it.
        raise ApiConfigError(
            f"the API token may only contain letters, digits and -._~+/= (got {len(token)} "
            f"characters with others among them); generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    if token is None and not is_loopback(host):
        raise ApiConfigError(
            f"refusing to serve on {host!r} without a token: anyone who can reach it could read "
            f"and change the database. Set {TOKEN_ENV} (e.g. `export {TOKEN_ENV}=$(python -c "
            "'import secrets; print(secrets.token_urlsafe(32))')`), or bind to 127.0.0.1."
        )
    return token


class HeadAsGet:
    """Answer HEAD as GET without the body, as HTTP wants (FastAPI's GET routes answered HEAD
    with 405, so `curl -I` and monitors probing /healthz with HEAD got an error)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}  # the headers (Content-Length) stay GET's
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class _Retention:
    """Applies ORCHESTRATOR_RETENTION_DAYS now and then every ``interval`` seconds, counting
    what failed (/healthz reports it) and going on whatever the failure."""

    def __init__(self) -> None:
        self.runs = self.failures = 0
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        return {"runs": self.runs, "failures": self.failures, "last_error": self.last_error}

    async def loop(self, db: DatabaseManager, interval: float) -> None:
        while True:
            self.runs += 1
            try:
                counts = await apply_retention_policy(db)
                if any(counts.values()):
                    logger.info("retention: pruned %s", counts)
            except OrchestratorDBError as exc:  # a bad setting or a busy database: say so
                self.failures, self.last_error = self.failures + 1, str(exc)
                logger.warning("retention policy not applied: %s", exc)
            except Exception as exc:  # a bug: the next run is tried all the same
                self.failures, self.last_error = self.failures + 1, repr(exc)
                logger.exception("retention policy failed")
            await asyncio.sleep(interval)


def create_app(
    url: str | None = None,
    db_path: str | os.PathLike[str] | None = None,
    *,
    token: str | None = None,
    host: str = DEFAULT_HOST,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    manager: DatabaseManager | None = None,
    poll_interval: float = 0.05,
    allowed_hosts: Sequence[str] = LOOPBACK_NAMES,
    retention_interval: float = 3600.0,
    max_otlp_body_bytes: int = DEFAULT_MAX_OTLP_BODY_BYTES,
) -> FastAPI:
    """Build the service.

    Args:
        url, db_path: the database (design §4 resolution when both are None).
        token: the API token; defaults to ``ORCHESTRATOR_API_TOKEN``. Required when ``host`` is
            not a loopback address; enforced whenever set.
        host: the address the app will be served on (only used for the token rule above).
        max_body_bytes: larger request bodies get 413. A route that takes a record admits at
            least the largest record its schema accepts (``limits.py``: a prompt's content and
            response may be 10,000,000 characters each), and OTLP exports have their own limit.
        max_otlp_body_bytes: the same for OTLP export requests (``/v1/traces``, ``/v1/logs``).
        manager: an already-built manager to use instead of opening one from ``url``/``db_path``;
            it is connected by the lifespan if needed and then left open for its owner.
        poll_interval: how often the change feed checks for new rows.
        allowed_hosts: without a token, the Host names requests may use (loopback names by
            default; add yours when a local reverse proxy forwards another name).
        retention_interval: with ``ORCHESTRATOR_RETENTION_DAYS`` set, seconds between two
            applications of the retention policy (the first runs at start-up).

    Raises:
        ApiConfigError: a non-loopback ``host`` without a token, a token of the wrong form, or
            an ``ORCHESTRATOR_RETENTION_DAYS`` that is not a number of days.
    """
    required_token = resolve_token(host, token)
    try:  # a bad setting stops the service now, in one line, not its retention task later
        retention_days()
    except OrchestratorDBError as exc:
        raise ApiConfigError(str(exc)) from exc
    redact_tokens_in_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = manager if manager is not None else DatabaseManager(db_path, url=url)
        owns_db = manager is None or not manager.is_connected
        await db.connect()
        feed = ChangeFeed(db, poll_interval=poll_interval)
        receiver = OtlpReceiver(db)
        retention: asyncio.Task[None] | None = None
        try:
            await feed.start()
            await receiver.start()
            app.state.otlp = receiver
            app.state.db = db
            app.state.feed = feed
            app.state.retention_status = None
            if retention_days() is not None:
                app.state.retention_status = policy = _Retention()
                retention = asyncio.create_task(policy.loop(db, retention_interval))
            app.state.retention = retention
            yield
        finally:
            try:
                if retention is not None:
                    retention.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await retention
                await receiver.stop()  # writes what was queued: acknowledged means stored
                await feed.stop()
            finally:
                if owns_db:
                    await db.close()

    app = FastAPI(
        title="orchestrator-db",
        version=__version__,
        description=(
            "Records and live events of multi-agent AI orchestrators. Lists answer "
            "`{\"items\": [...], \"next_cursor\": ...}`; pass `next_cursor` back as `cursor` for "
            "the next page. Errors answer `{\"error\": {\"type\", \"message\", \"field\"}}`. "
            "Live events: WebSocket `/ws/events?session_id=&agent_id=&min_level=&after=`."
        ),
        lifespan=lifespan,
        # /docs is served below from files in the package (FastAPI's default loads Swagger UI
        # from a CDN: a blank page offline); no ReDoc, which would need its CDN too.
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(ws.router)
    app.include_router(otlp.router)

    @app.get("/healthz", response_model=Health, tags=["service"],
             responses={503: {"model": Health, "description": "Live events are failing."}})
    async def healthz(request: Request, response: Response) -> dict[str, Any]:
        """The service is up and its database answers; 503 while live events are failing."""
        db: DatabaseManager = request.app.state.db
        feed: ChangeFeed = request.app.state.feed
        status = feed.status()
        version, error = None, None
        try:
            version = await db.schema_version()
        except OrchestratorDBError as exc:  # the database does not answer: say so, as a 503
            error = str(exc)
        healthy = status["healthy"] and error is None
        if not healthy:
            response.status_code = 503
        retention = request.app.state.retention_status
        return {"status": "ok" if healthy else "degraded", "engine": db.dialect.value,
                "schema_version": version, "database_error": error, "feed": status,
                "otlp": request.app.state.otlp.status(),
                "retention": retention.status() if retention is not None else None}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API docs",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html",
                            headers=DASHBOARD_HEADERS)

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    app.add_middleware(HeadAsGet)  # innermost: past the checks a GET would meet
    # Outermost first: refuse strangers before reading their bodies.
    app.add_middleware(StrictUtf8)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes,
                       path_limits={**dict.fromkeys(OTLP_PATHS, max_otlp_body_bytes),
                                    # Each record route admits what the library accepts.
                                    **body_limits(routes.router.routes, max_body_bytes)})
    if required_token is not None:
        app.add_middleware(TokenAuth, token=required_token)
    else:
        app.add_middleware(LocalOnly, allowed_hosts=tuple(allowed_hosts))
    app.state.token_required = required_token is not None
    return app
