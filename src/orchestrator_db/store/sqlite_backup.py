"""Backup and restore of a SQLite file: SQLite's online backup, one read snapshot at a time."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..config import Dialect
from ..errors import DuplicateError, NotFoundError, OrchestratorDBError, SchemaError
from .catalog import check_sqlite_schema
from .migrations import Migration, load_migrations, pending
from .sqlite_connection import apply_migrations, recorded_versions, translate_error


def backup_file(src_path: Path, dest: Path, busy_timeout_ms: int) -> None:
    """Copy one read snapshot of ``src_path`` to the new file ``dest`` (SQLite's online backup)."""
    if dest.exists():
        raise DuplicateError(f"{dest} already exists; backup never overwrites a file",
                             field="dest")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"{src_path.resolve().as_uri()}?mode=ro", uri=True)
    except (OSError, sqlite3.Error) as exc:
        raise OrchestratorDBError(f"cannot back up {src_path} to {dest}: {exc}") from exc
    try:
        src.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # sql-ok: int
        target = sqlite3.connect(dest)
        try:
            src.backup(target)
            target.execute("PRAGMA journal_mode = WAL")
        finally:
            target.close()
    except sqlite3.Error as exc:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise translate_error(exc, busy_timeout_ms) from exc
    finally:
        src.close()


def restore_file(src_path: Path, conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Replace the database of ``conn`` with the backup ``src_path`` (checked first).

    A backup of an older schema is migrated on a copy first: a backup that is refused leaves
    the database of ``conn`` as it was.
    """
    if not src_path.is_file():
        raise NotFoundError(f"no backup at {src_path}", path=str(src_path))
    try:
        src = sqlite3.connect(f"{src_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OrchestratorDBError(f"cannot open {src_path}: {exc}") from exc
    try:
        migrations = load_migrations(Dialect.SQLITE)
        applied = check_snapshot(src, src_path, migrations)
        if not pending(migrations, applied):
            _replace(src, conn, busy_timeout_ms)
        else:
            with _migrated_copy(src, src_path, migrations, conn) as copy:
                _replace(copy, conn, busy_timeout_ms)
    except sqlite3.Error as exc:
        raise translate_error(exc, busy_timeout_ms) from exc
    finally:
        src.close()


def _replace(src: sqlite3.Connection, conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # sql-ok: int
    try:
        src.backup(conn)
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


@contextlib.contextmanager
def _migrated_copy(src: sqlite3.Connection, src_path: Path, migrations: list[Migration],
                   target: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A copy of ``src`` brought up to date, next to the database of ``target``; removed after.

    Migrated before anything is replaced: a migration that fails on the backup's tables (made
    by another program) leaves the target with its own rows.
    """
    target_file = target.execute("PRAGMA database_list").fetchone()[2]
    try:
        fd, name = tempfile.mkstemp(prefix=".restore-", suffix=".db",
                                    dir=Path(target_file).parent if target_file else None)
        os.close(fd)
    except OSError as exc:
        raise OrchestratorDBError(f"cannot make a working copy of {src_path}: {exc}") from exc
    copy = sqlite3.connect(name, isolation_level=None)
    try:
        src.backup(copy)
        apply_migrations(copy, migrations, None, str(src_path))
        yield copy
    finally:
        copy.close()
        for suffix in ("", "-journal"):
            with contextlib.suppress(OSError):
                Path(name + suffix).unlink()


def check_snapshot(src: sqlite3.Connection, src_path: Path, migrations: list[Migration]
                   ) -> set[int]:
    """Return the versions of the backup ``src``; SchemaError unless it is ours, intact and
    not newer than this package.

    Checked before anything is replaced: a backup that is another program's database, or of a
    newer schema, would leave the target with its rows and refused by every command.
    """
    check = src.execute("PRAGMA integrity_check").fetchone()[0]
    applied = recorded_versions(src, str(src_path)) if check == "ok" else None
    if not applied:
        raise SchemaError(f"{src_path} is not an orchestrator-db backup (integrity: {check}; "
                          f"schema versions recorded: {bool(applied)}); nothing was restored")
    newest = migrations[-1].version
    if max(applied) > newest:
        raise SchemaError(
            f"{src_path} holds schema version {max(applied)}, newer than this orchestrator-db "
            f"(version {newest}); nothing was restored: upgrade the package to restore it",
            found_version=max(applied), newest_version=newest)
    check_sqlite_schema(src, applied, str(src_path))
    return applied


__all__ = ["backup_file", "check_snapshot", "restore_file"]
