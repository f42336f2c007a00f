"""Data commands: sessions, agents, logs (with --follow), export, prune."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from ..database import DatabaseManager
from ..errors import OrchestratorDBError
from ..events import ChangeEvent, ChangeFeed
from ..models import LOG_LEVELS
from . import (
    DbOption,
    JsonOption,
    UrlOption,
    app,
    console,
    err_console,
    examples,
    fail,
    row_count,
    run_with_db,
)
from .display import RAW_IN_JSON, plain, visible

FOLLOW_INTERVAL_S = 0.2  # how often --follow looks for new commits (one cheap read)
LEVEL_STYLES = {"DEBUG": "dim", "INFO": "cyan", "WARNING": "yellow", "ERROR": "red",
                "CRITICAL": "bold red"}
LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, max=1000,
                                          help="How many rows to show.")]
SessionOption = Annotated[str | None, typer.Option("--session", help="Only this session's rows.")]


def _time(value: str | None) -> Text:
    return plain("" if not value else value[:19].replace("T", " "))


def _json_text(data: Any, indent: int | None = None) -> str:
    """JSON of ``data`` for a terminal: non-ASCII text kept, every control character escaped."""
    return RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}",
                            json.dumps(data, indent=indent, ensure_ascii=False))


def _print_json(data: Any) -> None:
    print(_json_text(data, indent=2))


# sessions -------------------------------------------------------------------------------------
@app.command(epilog=examples("sessions"))
def sessions(url: UrlOption = None, db: DbOption = None, limit: LimitOption = 20,
             as_json: JsonOption = False) -> None:
    """List sessions, most recently started first: agents, status, cost, last activity."""
    async def work(manager: DatabaseManager) -> list[dict[str, Any]]:
        return await manager.list_sessions(limit=limit)

    rows = run_with_db(url, db, work)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print("no sessions yet")
        return
    table = Table(title="sessions")
    table.add_column("session", no_wrap=True)
    table.add_column("agents", justify="right")
    table.add_column("status")
    table.add_column("prompts", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("cost (USD)", justify="right")
    table.add_column("last activity (UTC)")
    for r in rows:
        status = r["status"]
        if r.get("failed_attempts"):  # a failed run that a later run of its agent replaced
            n = r["failed_attempts"]
            status += f" ({n} failed attempt{'s' if n > 1 else ''})"
        table.add_row(plain(r["session_id"]), str(r["agents"]), plain(status), str(r["prompts"]),
                      f"{r['tokens_input'] + r['tokens_output']:,}", f"{r['cost_usd']:.4f}",
                      _time(r["last_activity"]))
    console.print(table)


# agents ---------------------------------------------------------------------------------------
@app.command(epilog=examples("agents"))
def agents(
    url: UrlOption = None, db: DbOption = None,
    session: SessionOption = None,
    status: Annotated[str | None, typer.Option(
        "--status", help="pending, executing, completed, failed or cancelled.")] = None,
    definitions: Annotated[bool, typer.Option(
        "--definitions", help="List the orchestrator agent definitions instead.")] = False,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """List runtime agents, newest first (or the orchestrator agent definitions)."""
    async def work(manager: DatabaseManager) -> tuple[list[dict[str, Any]], dict[str, str]]:
        if definitions:
            return await manager.list_orchestrator_agents(limit=limit), {}
        rows = await manager.list_agents(session_id=session, status=status, limit=limit,
                                         order="desc")
        names = {}
        for oa_id in {r["orchestrator_agent_id"] for r in rows}:
            oa = await manager.get_orchestrator_agent(oa_id)
            names[oa_id] = oa["name"] if oa else "?"
        return rows, names

    rows, names = run_with_db(url, db, work)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="orchestrator agents" if definitions else "agents")
    # Ids are for copying into --agent: never wrapped.
    table.add_column("id", no_wrap=True, min_width=36)
    if definitions:
        for column in ("name", "type", "model", "status", "created (UTC)"):
            table.add_column(column)
        for r in rows:
            table.add_row(plain(r["id"]), plain(r["name"]), plain(r["agent_type"] or ""),
                          plain(r["default_model"] or ""), plain(r["status"]),
                          _time(r["created_at"]))
    else:
        for column in ("agent", "session", "model", "status", "started (UTC)",
                       "completed (UTC)"):
            table.add_column(column)
        for r in rows:
            label = names.get(r["orchestrator_agent_id"], "?")
            if r["name"]:
                label = f"{r['name']} ({label})"
            table.add_row(plain(r["id"]), plain(label), plain(r["session_id"]),
                          plain(r["model"] or ""), plain(r["status"]), _time(r["started_at"]),
                          _time(r["completed_at"]))
    console.print(table)


# logs -----------------------------------------------------------------------------------------
def agent_label(name: str | None, agent_id: str) -> str:
    """An agent as people tell them apart: its name and the random tail of its id.

    The first characters of a UUIDv7 are its timestamp, the same for every agent started within
    a minute; the last eight are random.
    """
    return f"{name or '?'} {agent_id[-8:]}"


async def _agent_labels(manager: DatabaseManager, rows: list[dict[str, Any]],
                        labels: dict[str, str]) -> None:
    """Add the labels of the agents of ``rows`` that ``labels`` does not know yet."""
    names: dict[str, str | None] = {}
    for agent_id in {r["agent_id"] for r in rows} - labels.keys():
        agent = await manager.get_agent(agent_id)
        name = agent["name"] if agent else None
        if agent and not name:
            oa_id = agent["orchestrator_agent_id"]
            if oa_id not in names:
                oa = await manager.get_orchestrator_agent(oa_id)
                names[oa_id] = oa["name"] if oa else None
            name = names[oa_id]
        labels[agent_id] = agent_label(name, agent_id)


def _log_line(row: dict[str, Any], system: bool, labels: dict[str, str] | None = None) -> Text:
    # Log text is untrusted (LLM output): appended as Text, never parsed as markup, and every
    # part through visible(), so a control character in it is shown, not obeyed.
    level = row["log_level"]
    line = Text()
    line.append(visible(row["created_at"][:23].replace("T", " ")), style="dim")
    line.append(" ")
    line.append(visible(f"{level:<8}"), style=LEVEL_STYLES.get(level, ""))
    line.append(" ")
    if system:
        line.append(visible(row.get("source") or "-"), style="magenta")
    else:
        name, _, tail = (labels or {}).get(row["agent_id"], agent_label(None, row["agent_id"])
                                           ).rpartition(" ")
        line.append(visible(name), style="magenta")
        line.append(visible(f" {tail}"), style="dim")
        line.append(visible(f" {row['log_type']}"), style="blue")
    line.append(visible(f"  {row['message']}"))
    if row.get("details") is not None:
        # JSON escapes C0 controls but, with ensure_ascii=False, not DEL or C1 ones.
        line.append(visible(" " + json.dumps(row["details"], ensure_ascii=False)), style="dim")
    return line


@app.command(epilog=examples("logs"))
def logs(
    url: UrlOption = None, db: DbOption = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent (id).")] = None,
    session: SessionOption = None,
    level: Annotated[str | None, typer.Option(
        "--level", "--min-level", help=f"This level and above: {', '.join(LOG_LEVELS)}.")
    ] = None,
    system: Annotated[bool, typer.Option("--system", help="Show system logs instead.")] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines as they are written (Ctrl-C stops).")
    ] = False,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """Show the latest agent log lines (or system logs), oldest first; --follow tails them.

    With --json, one JSON object per line (JSON Lines), also when following.
    """
    if system and (agent or session):
        raise fail("--agent and --session filter agent logs; they cannot be used with --system")

    labels: dict[str, str] = {}  # agent id -> "name 1a2b3c4d", looked up once

    def emit(row: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.write(_json_text(row) + "\n")
            sys.stdout.flush()
        else:
            console.print(_log_line(row, system, labels), highlight=False, soft_wrap=True)
            console.file.flush()

    async def learn(manager: DatabaseManager, rows: list[dict[str, Any]]) -> None:
        if not (as_json or system):
            await _agent_labels(manager, rows, labels)

    def page(manager: DatabaseManager, **kwargs: Any) -> Any:
        if system:
            return manager.page_system_logs(min_level=level, **kwargs)
        return manager.page_agent_logs(agent, session_id=session, min_level=level, **kwargs)

    async def show_latest(manager: DatabaseManager) -> set[str]:
        latest = (await page(manager, limit=limit, order="desc")).items
        latest.reverse()
        await learn(manager, latest)
        for row in latest:
            emit(row)
        return {row["id"] for row in latest}

    async def work(manager: DatabaseManager) -> None:
        if not follow:
            await show_latest(manager)
            return
        # --follow tails the change log (events.ChangeFeed), not created_at: a row's position
        # there is given when it is written, so every line inserted after the latest ones were
        # read shows up exactly once, however its created_at was set (future-dated, clock
        # skew, back-dated, a batching handler's late commit) and in the order it was written.
        # (The one exception is the feed's: a gap held open over GAP_DEADLINE by a forgotten
        # PostgreSQL transaction is stepped over; see events/feed.py.)
        async with ChangeFeed(manager, poll_interval=FOLLOW_INTERVAL_S) as feed:
            # Taken before the latest lines are read: a line committed in between is both
            # among them and after this position, so it is recognised by its id and not
            # printed twice.
            after = await feed.current_position()
            shown = await show_latest(manager)
            table = "system_logs" if system else "agent_logs"
            # The feed compares ids as text; the query above accepted any spelling of a UUID.
            agent_id = None if agent is None else str(uuid.UUID(agent))
            batches = feed.subscribe_batches(after=after, session_id=session,
                                             agent_id=agent_id, min_level=level)
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    rows = []
                    for event in batch:
                        if event.is_notice:
                            _notice(event)
                        elif (event.table == table and event.op == "insert"
                              and event.row is not None):
                            if event.id in shown:
                                shown.discard(event.id)
                            else:
                                rows.append(event.row)
                    await learn(manager, rows)
                    for row in rows:
                        emit(row)

    try:
        run_with_db(url, db, work)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _notice(event: ChangeEvent) -> None:
    """Report a notice of the change feed (live lines delayed, database replaced) on stderr."""
    message = (event.row or {}).get("message", event.op)
    err_console.print(Text.assemble(("warning:", "yellow"), " ", visible(message)),
                      soft_wrap=True)


# export ---------------------------------------------------------------------------------------
class _CountingWriter(io.TextIOBase):
    """Passes text through and counts lines, to show progress while exporting."""

    def __init__(self, out: TextIO, progress: Progress, task: Any) -> None:
        self.out, self.progress, self.task, self.lines = out, progress, task, 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.out.write(text)
        lines = text.count("\n")
        if lines:
            self.lines += lines
            if self.lines % 1000 < lines:
                self.progress.update(self.task, description=f"exported {self.lines:,} lines")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


@app.command(epilog=examples("export"))
def export(
    table: Annotated[str, typer.Option(
        "--table", "-t", help="orchestrator_agents, agents, prompts, agent_logs or system_logs.")],
    url: UrlOption = None, db: DbOption = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-F", help="jsonl or csv (default: from the --output file's name, .csv or "
        ".jsonl; else jsonl).", show_default=False)] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only rows created at or after this ISO 8601 time.")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Only rows created before this ISO 8601 time.")] = None,
    session: SessionOption = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file instead of stdout.", dir_okay=False)] = None,
) -> None:
    """Stream the rows of one table as JSON Lines or CSV, oldest first."""
    to_stdout = output is None or str(output) == "-"
    fmt = _export_format(fmt, None if to_stdout else output)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console,
                        transient=True, disable=not err_console.is_terminal)
    partial = None if to_stdout else output.with_name(output.name + ".partial")  # type: ignore[union-attr]

    async def work(manager: DatabaseManager) -> int:
        if not hasattr(manager, "export"):
            raise OrchestratorDBError("this version of orchestrator-db cannot export yet")
        task = progress.add_task("exporting")
        if partial is None:
            out = _CountingWriter(sys.stdout, progress, task)
            count = await manager.export(table, out, format=fmt, session_id=session,
                                         since=since, until=until)
            sys.stdout.flush()
            return int(count)
        with open(partial, "w", encoding="utf-8", newline="") as f:
            out = _CountingWriter(f, progress, task)
            return int(await manager.export(table, out, format=fmt, session_id=session,
                                            since=since, until=until))

    try:
        with progress:
            count = run_with_db(url, db, work)
    except OSError as exc:
        _remove(partial)
        if to_stdout and isinstance(exc, BrokenPipeError):
            raise  # the reader went away (`| head`): Click ends the command quietly
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    except BaseException:
        _remove(partial)
        raise
    if partial is not None and output is not None:
        os.replace(partial, output)
        err_console.print(plain(f"exported {row_count(count)} of {table} to {output}"),
                          soft_wrap=True)
    else:
        err_console.print(plain(f"exported {row_count(count)} of {table}"))


_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _export_format(fmt: str | None, output: Path | None) -> str:
    """The format asked for, else the one the output file's name says (JSON Lines by default);
    a name that says the other format is refused rather than given the wrong content."""
    implied = _SUFFIX_FORMATS.get(output.suffix.lower()) if output is not None else None
    if fmt is None:
        return implied or "jsonl"
    fmt = fmt.lower()
    if fmt not in ("jsonl", "csv"):
        raise fail(f"--format must be jsonl or csv, got {fmt!r}")
    if implied is not None and implied != fmt:
        raise fail(f"--format {fmt} does not match the file name {output}: "
                   f"name it .{fmt}, or leave --format out")
    return fmt


def _remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


# prune ----------------------------------------------------------------------------------------
@app.command(epilog=examples("prune"))
def prune(
    older_than: Annotated[str, typer.Option(
        "--older-than", help="Age (30d, 12h, 45m, 2w) or an ISO 8601 time: rows created "
        "before it are deleted.")],
    url: UrlOption = None, db: DbOption = None,
    tables: Annotated[list[str] | None, typer.Option(
        "--table", "-t", help="Prune only this table (repeatable): agent_logs, system_logs, "
        "prompts or changes, the change feed's log (default: all four).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete old records; tokens and cost of pruned prompts are kept in a daily rollup."""
    async def work(manager: DatabaseManager) -> dict[str, int]:
        if not hasattr(manager, "prune"):
            raise OrchestratorDBError("this version of orchestrator-db cannot prune yet")
        kwargs: dict[str, Any] = {"dry_run": dry_run}
        if tables:
            kwargs["tables"] = tuple(tables)
        return dict(await manager.prune(older_than, **kwargs))

    spinner = Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console,
                       transient=True, disable=not err_console.is_terminal)
    with spinner:
        spinner.add_task("counting old rows" if dry_run else "pruning old rows")
        counts = run_with_db(url, db, work)
    if as_json:
        _print_json({"dry_run": dry_run, "older_than": older_than, "counts": counts})
        return
    verb = "would delete" if dry_run else "deleted"
    table = Table(title=plain(f"prune --older-than {older_than}"
                              + (" (dry run)" if dry_run else ""), "table.title"))
    table.add_column("table")
    table.add_column(verb, justify="right")
    for name, n in counts.items():
        table.add_row(plain(name), f"{n:,}")
    console.print(table)
    console.print(f"{verb} {row_count(sum(counts.values()))}", highlight=False)

