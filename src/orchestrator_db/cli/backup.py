"""Backup commands: a consistent snapshot of a SQLite database while writers keep going."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..database import DatabaseManager
from . import DbOption, UrlOption, app, console, examples, run_with_db
from .display import plain


@app.command(epilog=examples("backup"))
def backup(
    dest: Annotated[Path, typer.Argument(help="The new SQLite file to write (never overwritten).")],
    url: UrlOption = None, db: DbOption = None,
) -> None:
    """Write a consistent snapshot of the database to DEST while writers keep going.

    Never back up with `cp`: rows still in the -wal file would be missing from the copy.
    PostgreSQL: use pg_dump, or `orchestrator-db copy <url> sqlite:///file.db`.
    """
    async def work(manager: DatabaseManager) -> Path:
        return await manager.backup(dest)

    written = run_with_db(url, db, work)
    console.print(plain(f"backed up to {written} ({written.stat().st_size:,} bytes)"),
                  soft_wrap=True)


@app.command(epilog=examples("restore"))
def restore(
    src: Annotated[Path, typer.Argument(help="A snapshot written by `orchestrator-db backup`.")],
    url: UrlOption = None, db: DbOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a database that holds "
                                                      "records.")] = False,
) -> None:
    """Replace the database's contents with the snapshot SRC (stop its writers first)."""
    async def work(manager: DatabaseManager) -> int:
        await manager.restore(src, force=force)
        return sum((await manager.stats())["counts"].values())

    records = run_with_db(url, db, work, create=True)
    console.print(plain(f"restored {src}: {records:,} records"), soft_wrap=True)
