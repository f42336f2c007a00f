"""The ``orchestrator-db`` command: thin Typer commands over the library."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from dotenv import load_dotenv
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

try:  # Typer vendors Click (as typer._click) since 0.2x; before, it used Click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer
    from click import exceptions as click_errors  # type: ignore[no-redef]

from ..config import DOTENV_FILE
from ..database import DatabaseManager
from ..errors import OrchestratorDBError
from ..version import __version__
from .display import visible

T = TypeVar("T")


class OneLineErrors(TyperGroup):
    """The command group, whose usage errors are one red line and exit code 1.

    Click's standalone mode would print a boxed usage text and exit with 2; every other error of
    this CLI is one ``error:`` line and 1, so a bad option or a missing argument is too (in the
    installed command and under ``CliRunner`` alike).
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args,
                                **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, windows_expand_args,
                                  **extra)
        except click_errors.NoArgsIsHelpError as exc:  # bare `orchestrator-db`: the help
            # (Typer's rich help is printed as it is made; plain Click's comes back as text.)
            if help_text := exc.format_message().strip():
                print(help_text)
            sys.exit(0)
        except click_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "orchestrator-db"
            hint = f"see `{where} --help`"
            if isinstance(exc, click_errors.NoSuchOption) and exc.option_name == "--debug":
                hint = "--debug goes before the command: `orchestrator-db --debug COMMAND ...`"
            _error_line(f"{exc.format_message()} ({hint})")
            sys.exit(1)
        except click_errors.ClickException as exc:
            _error_line(exc.format_message())
            sys.exit(1)
        except typer.Abort:
            _error_line("aborted")
            sys.exit(1)
        # Not standalone, Click hands back a command's return value or the code of its Exit.
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="orchestrator-db",
    help="Persistence and observability for multi-agent AI orchestrators.\n\n"
    "Settings (DATABASE_URL, ORCHESTRATOR_DB_PATH, ORCHESTRATOR_HOST, ...) come from the "
    "environment, then from a .env file in the working directory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
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
    _error_line(cli_words(str(error)) if isinstance(error, OrchestratorDBError) else str(error))
    return typer.Exit(1)


# The library names its parameters in messages ("min_level must be one of ..."); here they are
# the options the user typed. Only a name that starts the message, or `name=True`, is replaced.
CLI_OPTIONS = {
    "min_level": "--level", "log_level": "--level", "older_than": "--older-than",
    "merge": "--merge", "agent_id": "--agent", "session_id": "--session",
    "batch_size": "--batch-size", "since": "--since", "until": "--until", "tables": "--table",
    "format": "--format", "limit": "--limit", "status": "--status",
}


# Each command's examples, shown at the end of its --help (one command line per line).
EXAMPLES: dict[str, str] = {
    "sessions": """\
orchestrator-db sessions
orchestrator-db sessions --limit 5 --json""",
    "agents": """\
orchestrator-db agents --session run-42
orchestrator-db agents --status failed --json
orchestrator-db agents --definitions""",
    "logs": """\
orchestrator-db logs --agent 0193a1c2-... --follow
orchestrator-db logs --session run-42 --level WARNING -n 200
orchestrator-db logs --system --json""",
    "export": """\
orchestrator-db export --table agent_logs --format jsonl -o logs.jsonl
orchestrator-db export --table prompts --format csv --session run-42 > prompts.csv
orchestrator-db export --table system_logs --since 2026-11-01 --until 2026-11-08""",
    "prune": """\
orchestrator-db prune --older-than 30d --dry-run
orchestrator-db prune --older-than 12h --table agent_logs --table system_logs
orchestrator-db prune --older-than 2026-01-01T00:00:00Z""",
    "init": """\
orchestrator-db init                 # into the current directory
orchestrator-db init ../my-orchestrator --dry-run
orchestrator-db init --engine postgres --force""",
    "copy": """\
orchestrator-db copy sqlite:///data/orchestrator.db postgresql://me@db/orchestrator
orchestrator-db --debug copy postgresql://me@db/orchestrator backup.db
DATABASE_URL=sqlite:///data/orchestrator.db orchestrator-db copy postgresql://db/o""",
    "backup": """\
orchestrator-db backup backups/orchestrator-2026-12-01.db
orchestrator-db backup snapshot.db --db data/orchestrator.db""",
    "restore": """\
orchestrator-db restore backups/orchestrator-2026-12-01.db --force""",
}


def examples(command: str) -> str:
    """A command's help epilog: its example command lines, one paragraph each."""
    lines = EXAMPLES[command].splitlines()
    return ("Examples:" if len(lines) > 1 else "Example:") + "".join(f"\n\n  {line}" for line in lines)


def row_count(count: int) -> str:
    """``1 row``, ``2,000 rows``."""
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def cli_words(message: str) -> str:
    """Return a library message with its parameter names spelled as the CLI's options."""
    head = re.match(r"[a-z_]+(?=[ :])", message)
    if head is not None and head.group() in CLI_OPTIONS:
        message = CLI_OPTIONS[head.group()] + message[head.end():]
    return re.sub(r"\b([a-z_]+)=True\b",
                  lambda m: CLI_OPTIONS.get(m.group(1), m.group()), message)


def _error_line(message: str) -> None:
    # Messages quote stored and typed data: its control characters spelled out, never markup
    # (visible, Text); soft_wrap: one line however narrow the terminal, so scripts can grep it.
    # A driver's message may span lines (PostgreSQL's DETAIL:, HINT:): one line all the same.
    text = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    err_console.print(Text.assemble(("error:", "red"), " ", visible(text)), soft_wrap=True)


def run_with_db(url: str | None, db: str | None,
                work: Callable[[DatabaseManager], Awaitable[T]], *, create: bool = False,
                accept_interrupted_load: bool = False) -> T:
    """Open the configured database, run ``work`` and turn our errors into one red line.

    Only ``create=True`` (``upgrade``) makes a database that is not there; every other command
    says "no database at ..." rather than creating an empty one at a mistyped path.
    """

    async def main() -> T:
        manager = DatabaseManager(db, url=url, must_exist=not create)
        manager.accept_interrupted_load = accept_interrupted_load
        async with manager:
            return await work(manager)

    try:
        return asyncio.run(main())
    except OrchestratorDBError as exc:
        raise fail(exc) from None


def _print_version(value: bool) -> None:
    if value:
        console.print(f"orchestrator-db {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", is_eager=True,
        callback=_print_version)] = False,
) -> None:
    State.debug = debug
    # Before the command's own options are parsed, so ORCHESTRATOR_HOST / ORCHESTRATOR_PORT
    # (and every other setting) in .env work as if exported; the environment wins over it.
    load_dotenv(Path.cwd() / DOTENV_FILE, override=False)


def main() -> None:
    """Entry point of the console script."""
    app()


# Each module below registers its commands on ``app``, one module per group of commands; the
# import order is the order of `--help`.
from . import project, schema, service, data, backup, copy  # noqa: E402,F401,I001
