"""Schema migrations: the packaged SQL files of each engine, read in order."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from ..config import Dialect
from ..errors import SchemaError, SchemaNotFoundError


@dataclass
class Migration:
    """One numbered schema change, read from ``schema/<dialect>/NNNN_name.sql``."""

    version: int
    name: str
    sql: str


def load_migrations(dialect: Dialect) -> list[Migration]:
    """Return the packaged migrations of one engine, in order."""
    folder = resources.files("orchestrator_db") / "schema" / dialect.value.replace("postgresql", "postgres")
    try:
        entries = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SchemaNotFoundError(f"packaged migrations not found in {folder}") from exc
    migrations = []
    for entry in entries:
        number, _, rest = entry.name.partition("_")
        migrations.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    if not migrations:
        raise SchemaNotFoundError(f"no migrations found in {folder}")
    return migrations


_DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_]*\$")


def split_sql_script(script: str) -> list[str]:
    """Split a SQL script into statements (so they can run inside one transaction)."""

    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        # A PostgreSQL dollar-quoted body ($$ ... $$) holds semicolons that end nothing; SQLite's
        # completeness check does not know dollar quotes, so only ask it outside of one.
        if len(_DOLLAR_QUOTE.findall(buffer)) % 2 == 0 and sqlite3.complete_statement(buffer):
            text = buffer.strip()
            if _strip_comments(text):
                statements.append(text)
            buffer = ""
    if _strip_comments(buffer.strip()):
        raise SchemaError("schema script ends with an incomplete statement")
    return statements


def _strip_comments(text: str) -> str:
    return (
        "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        .strip()
        .rstrip(";")
        .strip()
    )
