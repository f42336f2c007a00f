"""``init``: put the database layer into an orchestrator project (design §8).

The files come from the Jinja2 templates shipped in ``orchestrator_db/templates/project``; the
SQLite schema file is rendered from the package's migrations (``render_sqlite_schema``), so it
never drifts from them. An existing file is never overwritten without ``--force``.
"""

from __future__ import annotations

import enum
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Annotated

import jinja2
import typer
from rich.table import Table
from rich.text import Text

from ..manager.schema import packaged_schema_version, render_sqlite_schema
from ..version import __version__
from . import app, console, examples, fail
from .display import plain

DEFAULT_DB_PATH = "data/orchestrator.db"
DEFAULT_POSTGRES_URL = "postgresql://postgres@localhost:5432/orchestrator"
# Characters that would need quoting in the generated Python and shell files.
UNSAFE_PATH_CHARS = set("\"'`$\\\n\r\t")


class Action(enum.Enum):
    """What ``init`` does (or would do) with one file."""

    CREATE = "create"
    OVERWRITE = "overwrite"
    UNCHANGED = "unchanged"
    SKIP = "skip"


@dataclass(frozen=True)
class ProjectFile:
    """One file of the project: where it goes, its content, and whether it runs."""

    path: str
    content: str
    executable: bool = False
    # Files the user owns once they exist (package __init__.py): never replaced, even by --force.
    only_if_missing: bool = False


@dataclass(frozen=True)
class Step:
    """A file and what to do with it."""

    file: ProjectFile
    action: Action


def render_project(*, engine: str = "sqlite", db_path: str = DEFAULT_DB_PATH,
                   postgres_url: str = DEFAULT_POSTGRES_URL) -> list[ProjectFile]:
    """Return the files of the database layer, rendered from the packaged templates."""
    folder = resources.files("orchestrator_db") / "templates" / "project"
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (folder / name).read_text(encoding="utf-8")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
    )
    context = {
        "version": __version__, "engine": engine, "db_path": db_path,
        "postgres_url": postgres_url,
        "schema_version": packaged_schema_version(),
    }

    def render(name: str, **extra: object) -> str:
        return env.get_template(name).render({**context, **extra})

    return [
        ProjectFile("adws/__init__.py", render("adws_init.py.j2"), only_if_missing=True),
        ProjectFile("adws/adw_database.py",
                    render("adw_database.py.j2", module="adws.adw_database", schema_up=0)),
        ProjectFile("adws/adw_modules/__init__.py", render("adw_modules_init.py.j2"),
                    only_if_missing=True),
        # Seed 002's backend puts adws/ on sys.path: `from adw_modules.adw_database import ...`
        ProjectFile("adws/adw_modules/adw_database.py",
                    render("adw_database.py.j2", module="adw_modules.adw_database",
                           schema_up=1)),
        ProjectFile("adws/adw_modules/orch_database_models.py",
                    render("orch_database_models.py.j2")),
        ProjectFile("adws/schema/schema_orchestrator.sqlite", render_sqlite_schema()),
        ProjectFile("adws/schema/README.md", render("schema_README.md.j2")),
        *_gitignore(db_path, render("data_gitignore.j2")),
        ProjectFile(".env.sample", render("env.sample.j2")),
        ProjectFile("scripts/setup_database.sh", render("setup_database.sh.j2"),
                    executable=True),
    ]


def _gitignore(db_path: str, content: str) -> list[ProjectFile]:
    """The .gitignore that keeps the database out of git, in the database's own folder.

    In the project's root it is written only where there is none (a project's own .gitignore
    is kept; the report then says to add the lines). A database outside the project (an
    absolute path, or one reaching up with ..) gets none.
    """
    folder = PurePosixPath(db_path).parent
    if folder.is_absolute() or ".." in folder.parts:
        return []
    if folder == PurePosixPath("."):
        return [ProjectFile(".gitignore", content, only_if_missing=True)]
    return [ProjectFile(f"{folder}/.gitignore", content)]


def plan(root: Path, files: list[ProjectFile], *, force: bool) -> list[Step]:
    """Decide, for each file, whether to create, overwrite, leave or skip it."""
    steps = []
    for f in files:
        target = root / f.path
        if not target.exists():
            action = Action.CREATE
        elif not target.is_file():
            raise OSError(f"{target} exists and is not a file")
        elif target.read_bytes() == f.content.encode():
            action = Action.UNCHANGED
        elif force and not f.only_if_missing:
            action = Action.OVERWRITE
        else:
            action = Action.SKIP
        steps.append(Step(f, action))
    return steps


def apply(root: Path, steps: list[Step]) -> None:
    """Write the files the plan creates or overwrites."""
    for step in steps:
        target = root / step.file.path
        if step.action in (Action.CREATE, Action.OVERWRITE):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(step.file.content.encode())
        if step.file.executable and step.action is not Action.SKIP:
            mode = target.stat().st_mode
            target.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@app.command(epilog=examples("init"))
def init(
    directory: Annotated[Path, typer.Argument(
        metavar="DIR", help="Project directory (created if missing; default: the current "
        "directory).", show_default=False)
    ] = Path("."),
    engine: Annotated[str, typer.Option(
        "--engine", help="sqlite or postgres: which database .env.sample selects.")] = "sqlite",
    db_path: Annotated[str, typer.Option(
        "--db", help="SQLite database file, relative to the project.")] = DEFAULT_DB_PATH,
    old_db_path: Annotated[str | None, typer.Option(
        "--db-path", hidden=True, help="The old name of --db.")] = None,
    postgres_url: Annotated[str, typer.Option(
        "--postgres-url", help="PostgreSQL URL written to .env.sample.")] = DEFAULT_POSTGRES_URL,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite files that exist and differ.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be written; write nothing.")] = False,
) -> None:
    """Add the database layer to an orchestrator project.

    Writes adws/adw_database.py (DatabaseManager; also as adws/adw_modules/adw_database.py,
    the import path of seed 002), adws/adw_modules/orch_database_models.py,
    adws/schema/schema_orchestrator.sqlite (generated from the package's migrations) with its
    README, a .gitignore beside the database (data/.gitignore), .env.sample and
    scripts/setup_database.sh. Existing files are left alone unless --force; running it again
    changes nothing.
    """
    if old_db_path is not None:
        db_path = old_db_path
    engine = engine.lower()
    if engine == "postgresql":
        engine = "postgres"
    if engine not in ("sqlite", "postgres"):
        raise fail(f"--engine must be sqlite or postgres, got {engine!r}")
    if not db_path or UNSAFE_PATH_CHARS & set(db_path):
        raise fail(f"--db must be a plain path without quotes, $ or backslashes, "
                   f"got {db_path!r}")
    if UNSAFE_PATH_CHARS & set(postgres_url):
        raise fail("--postgres-url must not contain quotes, $ or backslashes")
    if directory.exists() and not directory.is_dir():
        raise fail(f"{directory} exists and is not a directory")
    try:
        files = render_project(engine=engine, db_path=db_path, postgres_url=postgres_url)
        steps = plan(directory, files, force=force)
        if not dry_run:
            apply(directory, steps)
    except (OSError, jinja2.TemplateError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        raise fail(f"cannot write the project in {directory}: {reason}{where}") from None
    # .env.sample is read by nothing: settings other than the defaults take effect once copied.
    copy_env = ((engine == "postgres" or db_path != DEFAULT_DB_PATH)
                and not (directory / ".env").exists())
    _report(directory, steps, dry_run=dry_run, copy_env=copy_env)


def _report(directory: Path, steps: list[Step], *, dry_run: bool, copy_env: bool) -> None:
    done = {Action.CREATE: "created", Action.OVERWRITE: "overwritten",
            Action.UNCHANGED: "unchanged", Action.SKIP: "skipped (exists; --force to replace)"}
    planned = {Action.CREATE: "would create", Action.OVERWRITE: "would overwrite",
               Action.UNCHANGED: "unchanged", Action.SKIP: "would skip (exists; --force to "
               "replace)"}
    styles = {Action.CREATE: "green", Action.OVERWRITE: "yellow", Action.UNCHANGED: "dim",
              Action.SKIP: "yellow"}
    table = Table(title=plain(f"orchestrator-db init {directory}"
                              + (" (dry run)" if dry_run else ""), "table.title"),
                  show_header=False)
    for step in steps:
        label = (planned if dry_run else done)[step.action]
        if step.file.only_if_missing and step.action is Action.SKIP:
            label = "kept (yours)"
        table.add_row(Text(label, style=styles[step.action]), plain(step.file.path))
    console.print(table)
    skipped = [s.file.path for s in steps if s.action is Action.SKIP and not s.file.only_if_missing]
    if skipped and not dry_run:
        console.print(f"skipped {len(skipped)} existing file(s) that differ: "
                      f"{', '.join(skipped)} (use --force to overwrite)", highlight=False)
    if not dry_run and any(s.action in (Action.CREATE, Action.OVERWRITE) for s in steps):
        where = "" if directory.resolve() == Path.cwd() else f"cd {directory} && "
        if copy_env:
            where += "cp .env.sample .env && "
        console.print(plain(f"next: {where}scripts/setup_database.sh   (or let "
                            "DatabaseManager() create the database on first use)"),
                      soft_wrap=True)
        if copy_env:
            console.print(plain("(.env.sample holds the database you chose; DatabaseManager(), "
                                "the orchestrator-db command and the script read .env)"),
                          soft_wrap=True)
    kept = [s for s in steps if s.file.path == ".gitignore" and s.action is Action.SKIP]
    if kept and not dry_run:
        console.print(plain("your .gitignore was kept: add the database files to it ("
                            + ", ".join(kept[0].file.content.split("\n")[1:5]) + ")"),
                      soft_wrap=True)

