"""The ``orchestrator-db`` command: thin Typer commands over the library."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..database import DatabaseManager
from ..errors import OrchestratorDBError

T = TypeVar("T")

app = typer.Typer(
    name="orchestrator-db",
    help="Persistence and observability for multi-agent AI orchestrators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL: sqlite:///path or postgresql://user@host/db."),
]
DbOption = Annotated[str | None, typer.Option("--db", help="SQLite database file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class State:
    debug = False


def fail(error: str | Exception) -> typer.Exit:
    """Print one red ``error:`` line on stderr and return the exit (code 1) to raise.

    Every command reports its errors through here: ``raise fail(...) from None``.

    Args:
        error: The message, or the exception whose text is the message.

    Raises:
        Exception: ``error`` itself, when it is an exception and ``--debug`` asks for tracebacks.
    """
    if isinstance(error, Exception) and State.debug:
        raise error
    # escape: messages quote user data (Rich would read "[...]" in it as markup); soft_wrap:
    # one line however narrow the terminal, so scripts can grep it.
    # A driver's message may span lines (PostgreSQL's DETAIL:, HINT:): one line all the same.
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    err_console.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def run_with_db(url: str | None, db: str | None,
                work: Callable[[DatabaseManager], Awaitable[T]], *, create: bool = False) -> T:
    """Open the configured database, run ``work`` and turn our errors into one red line.

    Only ``create=True`` (``upgrade``) makes a database that is not there; every other command
    says "no database at ..." rather than creating an empty one at a mistyped path.
    """

    async def main() -> T:
        async with DatabaseManager(db, url=url, must_exist=not create) as manager:
            return await work(manager)

    try:
        return asyncio.run(main())
    except OrchestratorDBError as exc:
        raise fail(exc) from None


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    State.debug = debug


def main() -> None:
    """Entry point of the console script."""
    app()


# Each module below registers its commands on ``app``, one module per group of commands; the
# import order is the order of `--help`.
from . import project, schema, service, data, backup, copy  # noqa: E402,F401,I001
