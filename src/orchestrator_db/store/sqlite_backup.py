"""Backup and restore of a SQLite file: SQLite's online backup, one read snapshot at a time."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from ..errors import DuplicateError, NotFoundError, OrchestratorDBError, SchemaError
from .sqlite_connection import translate_error


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
    """Replace the database of ``conn`` with the backup ``src_path`` (checked first)."""
    if not src_path.is_file():
        raise NotFoundError(f"no backup at {src_path}", path=str(src_path))
    try:
        src = sqlite3.connect(f"{src_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OrchestratorDBError(f"cannot open {src_path}: {exc}") from exc
    try:
        check = src.execute("PRAGMA integrity_check").fetchone()[0]
        has_schema = src.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                 "AND name = 'schema_migrations'").fetchone()[0]
        if check != "ok" or not has_schema:
            raise SchemaError(f"{src_path} is not an orchestrator-db backup "
                              f"(integrity: {check}; schema table: {bool(has_schema)})")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")  # sql-ok: int
        try:
            src.backup(conn)
        finally:
            conn.execute("PRAGMA busy_timeout = 0")
    except sqlite3.Error as exc:
        raise translate_error(exc, busy_timeout_ms) from exc
    finally:
        src.close()


__all__ = ["backup_file", "restore_file"]
