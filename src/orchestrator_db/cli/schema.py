"""Schema and overview commands: upgrade, current, stats."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.table import Table

from ..database import DatabaseManager
from ..errors import OrchestratorDBError, SchemaError
from . import DbOption, JsonOption, UrlOption, app, console, err_console, fail, run_with_db
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
    """Print the schema version of the database, without migrating it (`upgrade` does).

    When it is not this orchestrator-db's version, a note on stderr says what to run.
    """
    async def main() -> int:
        async with DatabaseManager(db, url=url, must_exist=True, read_only=True) as manager:
            return manager.found_schema_version or 0

    note = None
    try:
        found = asyncio.run(main())
    except SchemaError as exc:
        # Opened read-only, a schema that is not the newest is refused, saying which it is.
        if not isinstance(exc.context.get("found_version"), int):
            raise fail(exc) from None
        found, newest = exc.context["found_version"], exc.context["newest_version"]
        note = (f"an upgrade is pending: this orchestrator-db's schema is version {newest}; "
                "run `orchestrator-db upgrade`" if found < newest else
                f"the database's schema is newer than this orchestrator-db's (version {newest}): "
                "upgrade the package")
    except OrchestratorDBError as exc:
        raise fail(exc) from None
    console.print(str(found))
    if note is not None:
        err_console.print(plain(note), soft_wrap=True)


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
