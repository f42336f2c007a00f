"""``copy``: move a whole database to another engine, resumably, verified at the end."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..config import resolve_target
from ..errors import OrchestratorDBError
from ..transfer import DEFAULT_BATCH_SIZE, CopyResult, copy_database
from . import DbOption, JsonOption, UrlOption, app, console, err_console, examples, fail, row_count
from .display import plain


@app.command("copy", epilog=examples("copy"))
def copy_command(
    src_url: Annotated[str, typer.Argument(
        metavar="SRC_URL", show_default=False,
        help="Source: sqlite:///path, postgresql://... or a SQLite path.")],
    dst_url: Annotated[str | None, typer.Argument(
        metavar="DST_URL", show_default=False,
        help="Destination. With only one URL given, that one is the destination and the "
        "source is --url/--db (or DATABASE_URL, ORCHESTRATOR_DB_PATH, data/orchestrator.db).")
    ] = None,
    url: UrlOption = None, db: DbOption = None,
    merge: Annotated[
        bool,
        typer.Option("--merge", help="Allow a destination holding other data: add the rows "
                     "whose ids it lacks (refused where a pruned prompt's cost would then "
                     "count twice)."),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows per destination transaction.")
    ] = DEFAULT_BATCH_SIZE,
    as_json: JsonOption = False,
) -> None:
    """Copy every record to another database (SQLite → PostgreSQL or back).

    The five record tables in dependency order, then the cost rollups and the received
    OpenTelemetry spans, with ids and timestamps kept, in batches (COPY on PostgreSQL).
    Interrupted? Run it again: it continues where it stopped, never duplicating. At the end
    row counts and per-table checksums of both sides are compared; any difference is an
    error. A destination that already holds other data is refused unless --merge. Stop
    writers on the source while it is copied.
    """
    try:
        if dst_url is not None:
            source, destination = src_url, dst_url
        else:
            source, destination = resolve_target(db, url=url).url, src_url
    except OrchestratorDBError as exc:
        raise fail(str(exc)) from None

    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=err_console, transient=False,
        disable=not err_console.is_terminal,
    )
    tasks: dict[tuple[str, str], TaskID] = {}

    def report(phase: str, table: str, done: int, total: int) -> None:
        key = (phase, table)
        if key not in tasks:
            label = f"{'copying' if phase == 'copy' else 'verifying'} {table}"
            tasks[key] = progress.add_task(label, total=total)
        progress.update(tasks[key], completed=done, total=total)

    try:
        with progress:
            result = asyncio.run(copy_database(source, destination, batch_size=batch_size,
                                               merge=merge, progress=report))
    except OrchestratorDBError as exc:
        raise fail(exc) from None
    except OSError as exc:
        raise fail(OrchestratorDBError(f"copy failed: {exc}")) from exc
    except KeyboardInterrupt:
        raise fail("interrupted; run the same copy again to continue where it stopped") from None
    _print_result(result, as_json)


def _print_result(result: CopyResult, as_json: bool) -> None:
    if as_json:
        data: dict[str, Any] = {
            "source": result.source, "destination": result.destination, "mode": result.mode,
            "verified": result.verified, "copied_rows": result.copied_rows,
            "tables": [vars(t) for t in result.tables],
        }
        print(json.dumps(data, indent=2))
        return
    table = Table(title=plain(f"{result.source} → {result.destination}", "table.title"))
    table.add_column("table", no_wrap=True, min_width=19)
    table.add_column("source rows", justify="right")
    table.add_column("already there", justify="right")
    table.add_column("copied", justify="right")
    table.add_column("sha256", no_wrap=True)
    for t in result.tables:
        table.add_row(t.table, f"{t.source_rows:,}", f"{t.existing_rows:,}",
                      f"{t.copied_rows:,}", (t.checksum or "")[:16])
    console.print(table)
    how = {"new": "copied", "resume": "resumed and completed", "merge": "merged"}[result.mode]
    done = f"{how} {row_count(result.copied_rows)}"
    if result.mode == "resume" and not result.copied_rows:
        done = "already complete: nothing to copy"  # a re-run of a copy that had ended
    console.print(f"{done}; verified: row counts and checksums of "
                  f"all {len(result.tables)} tables match", highlight=False, soft_wrap=True)
