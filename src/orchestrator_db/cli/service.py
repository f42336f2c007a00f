"""Service commands: serve (the API, live events and dashboard) and demo."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from ..api import create_app
from ..database import DatabaseManager
from ..errors import OrchestratorDBError
from . import DbOption, UrlOption, app, console, fail
from .display import plain

HostOption = Annotated[str, typer.Option("--host", envvar="ORCHESTRATOR_HOST",
                                         help="Address to listen on. Anything but "
                                         "loopback needs ORCHESTRATOR_API_TOKEN.")]
PortOption = Annotated[int, typer.Option("--port", envvar="ORCHESTRATOR_PORT",
                                         help="Port to listen on.")]


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def check_port(host: str, port: int) -> None:
    """Fail with one line unless ``port`` is valid and free on ``host`` (before any banner)."""
    if not 0 <= port <= 65535:
        raise fail(f"--port must be from 1 to 65535 (or 0 for any free port), got {port}")
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT is not taken for busy.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise fail(f"{host}:{port} {reason}; pick another with --port") from None


def _app(url: str | None, db: str | None, host: str, port: int) -> FastAPI:
    """Check the port and the configuration: every refusal before any banner, in one line."""
    check_port(host, port)
    try:
        return create_app(url, db, host=host)
    except OrchestratorDBError as exc:
        raise fail(exc) from None


def _serve(application: FastAPI, host: str, port: int, *, log_level: str) -> None:
    # No permessage-deflate on /ws/events: compressing each event once per subscriber (zlib on
    # the event loop) cost more loop time than the rest of the fan-out (benchmarks/bench_loop.py).
    uvicorn.run(application, host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=5, ws_max_size=1 << 20, ws_per_message_deflate=False)


@app.command()
def serve(
    host: HostOption = "127.0.0.1", port: PortOption = 8000,
    url: UrlOption = None, db: DbOption = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve the REST API, live events and the dashboard.

    Example: orchestrator-db serve --port 8000, then open http://127.0.0.1:8000/
    """
    application = _app(url, db, host, port)
    console.print(f"dashboard: http://{_display_host(host)}:{port}/   API docs: "
                  f"http://{_display_host(host)}:{port}/docs", highlight=False, soft_wrap=True)
    _serve(application, host, port, log_level=log_level)


@app.command()
def demo(
    host: HostOption = "127.0.0.1", port: PortOption = 8000,
    url: UrlOption = None, db: DbOption = None,
    duration: Annotated[float, typer.Option("--duration",
                                            help="Seconds the simulated run takes.")] = 25.0,
) -> None:
    """Serve the dashboard and write a simulated orchestrator run to watch live.

    A planner, a builder that fails once, its retry and a reviewer write prompts and logs for
    about 25 seconds in a separate process. Ctrl-C stops both.
    """
    try:
        target = DatabaseManager(db, url=url).target
    except OrchestratorDBError as exc:
        raise fail(exc) from None
    application = _app(target.url, None, host, port)
    # The database URL goes to the writer through its environment, not its command line, where
    # a PostgreSQL password would show up in `ps`.
    env = {**os.environ, "DATABASE_URL": target.url}
    writer = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_db.demo", "--duration", str(duration),
         "--delay", "2"], env=env)
    # Reap the writer as soon as it ends, so a finished run leaves no defunct process behind.
    threading.Thread(target=writer.wait, name="demo-writer-reaper", daemon=True).start()
    console.print(plain(f"demo: writing a simulated run to {target.display()} "
                        f"(writer pid {writer.pid})"), soft_wrap=True)
    console.print(f"dashboard: [bold]http://{_display_host(host)}:{port}/[/bold]  "
                  "(Ctrl-C stops the server and the writer)", highlight=False)
    try:
        _serve(application, host, port, log_level="warning")
    finally:
        if writer.poll() is None:
            writer.terminate()
        try:
            writer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()
