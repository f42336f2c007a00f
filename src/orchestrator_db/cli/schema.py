"""Schema and overview commands: upgrade, current, stats."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from ..database import DatabaseManager
from . import DbOption, JsonOption, UrlOption, app, console, run_with_db
from .display import plain


@app.command()
def upgrade(url: UrlOption = None, db: DbOption = None) -> None:
    """Create the database or apply pending schema migrations (and restore what a killed copy
    into it left off).

    Example: orchestrator-db upgrade --db data/orchestrator.db
    """
    async def work(manager: DatabaseManager) -> tuple[int | None, list[int], int, str, int]:
        restored = await manager.restore_after_interrupted_copy()
        return (manager.found_schema_version, manager.applied_migrations,
                await manager.schema_version(), manager.target.display(), restored)

    # A database a killed copy left without its indexes, keys and triggers is made whole too.
    found, applied, version, where, restored = run_with_db(url, db, work, create=True,
                                                           accept_interrupted_load=True)
    if not found:
        message = f"created the database at {where} (schema version {version})"
    elif found < version:
        message = f"migrated {where} from version {found} to {version}"
    elif applied:  # an older migration was not recorded as applied
        message = (f"applied migration(s) {', '.join(map(str, applied))} that {where} lacked "
                   f"(version {version})")
    else:
        message = f"{where} is already up to date (version {version})"
    if restored:
        message += (f"; restored {restored} index(es), key(s) and trigger(s) that a copy which "
                    "did not end had left off")
    console.print(plain(message), soft_wrap=True)  # the location may hold any character


@app.command()
def current(url: UrlOption = None, db: DbOption = None) -> None:
    """Print the schema version of the database."""
    async def work(manager: DatabaseManager) -> int:
        return await manager.schema_version()

    console.print(str(run_with_db(url, db, work)))


@app.command()
def stats(url: UrlOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Row counts, size, engine and schema version.

    Example: orchestrator-db stats --json
    """
    async def work(manager: DatabaseManager) -> dict[str, Any]:
        return await manager.stats()

    result = run_with_db(url, db, work)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title="orchestrator-db", show_header=False)
    table.add_row("engine", plain(result["engine"]))
    table.add_row("location", plain(result["location"]))
    table.add_row("schema version", str(result["schema_version"]))
    table.add_row("size", f"{result['size_bytes']:,} bytes")
    for name, count in result["counts"].items():
        table.add_row(plain(name), f"{count:,}")
    console.print(table)
