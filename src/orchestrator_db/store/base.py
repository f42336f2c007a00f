"""What every engine must provide, and the pieces they share.

A store executes parameterised SQL and hands back plain dicts whose values are already in the
public shape (UUID strings, fixed-shape UTC timestamp strings, decoded JSON). All query logic lives
in the engine-neutral manager; a store only knows how to talk to its driver, how to spell a
placeholder, how to take a lock, and how to turn its driver's errors into ours.
"""

from __future__ import annotations

import abc
import contextvars
import random
import re
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any

from ..config import Dialect, Target
from ..errors import SchemaError, SchemaNotFoundError
from ..models import JsonText, dumps_json

JSON_COLUMNS = frozenset({"metadata", "details", "capabilities"})


@dataclass(frozen=True)
class Json:
    """Marks a parameter as a JSON value (it may itself be a plain string)."""

    value: Any


@dataclass
class Migration:
    """One numbered schema change, read from ``schema/<dialect>/NNNN_name.sql``."""

    version: int
    name: str
    sql: str


@dataclass
class TxState:
    """The transaction a task is inside of, per store."""

    store: Store
    conn: Any
    depth: int = 0
    savepoints: list[str] = field(default_factory=list)


# The transaction the current task is in, if any. Tasks started inside a transaction inherit it,
# as they would a database connection handed to them: do not run such tasks concurrently.
current_tx: contextvars.ContextVar[TxState | None] = contextvars.ContextVar(
    "orchestrator_db_tx", default=None
)


class Query:
    """Collects parameters and hands back the engine's placeholder for each one."""

    __slots__ = ("dialect", "params")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.params: list[Any] = []

    def p(self, value: Any) -> str:
        """Add ``value`` as a parameter and return its placeholder."""
        self.params.append(value)
        if self.dialect is Dialect.SQLITE:
            return "?"
        return f"${len(self.params)}"


def load_migrations(dialect: Dialect) -> list[Migration]:
    """Return the packaged migrations of one engine, in order."""
    folder = resources.files("orchestrator_db") / "schema" / dialect.value.replace("postgresql",
                                                                                "postgres")
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
    import sqlite3

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
    return "\n".join(
        line for line in text.splitlines() if not line.strip().startswith("--")
    ).strip().rstrip(";").strip()


_uuid_lock = threading.Lock()
_uuid_last_ms = 0
_uuid_seq = 0


def uuid7() -> str:
    """Return a new time-ordered UUIDv7 string (monotonic within this process).

    Time-ordered ids append to the primary-key index instead of splitting random pages, and the
    12-bit sequence keeps ids created in the same millisecond in creation order, so that
    ``(created_at, id)`` order is insertion order within a process.
    """
    global _uuid_last_ms, _uuid_seq
    # `random` is reseeded in a forked child, so forked workers do not repeat each other; the
    # ids need uniqueness, not secrecy, and this costs a tenth of an os.urandom() syscall.
    rand = random.getrandbits(64)
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _uuid_last_ms:
            _uuid_last_ms = ms
            _uuid_seq = rand >> 53  # random start in the lower half of the 12-bit sequence
        else:
            _uuid_seq += 1
            if _uuid_seq > 0xFFF:
                _uuid_last_ms += 1
                _uuid_seq = 0
            ms = _uuid_last_ms
        seq = _uuid_seq
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Store(abc.ABC):
    """One engine's connection(s) and the primitives the manager builds on."""

    dialect: Dialect

    def __init__(self, target: Target) -> None:
        self.target = target

    def query(self) -> Query:
        """Return a new parameter collector for this engine."""
        return Query(self.dialect)

    # parameters ------------------------------------------------------------------------------
    @abc.abstractmethod
    def ts(self, value: datetime | None) -> Any:
        """Return a timestamp parameter in the form the driver stores."""

    @staticmethod
    def json(value: Any) -> Any:
        """Return a JSON parameter: the text a payload model encoded, or the value encoded now."""
        if value is None:
            return None
        return str.__str__(value) if isinstance(value, JsonText) else dumps_json(value)

    # lifecycle -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, apply the connection settings and the pending migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    # statements ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def fetch(self, sql: str, params: Sequence[Any] = (), *, heavy: bool = False
                    ) -> list[dict[str, Any]]:
        """Run a query and return its rows as public-shape dicts."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """Run a query and return its first row, or None."""
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement atomically and return the number of rows it touched."""

    @abc.abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one write statement for many parameter rows, atomically."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Group statements atomically; nested use makes a savepoint."""

    # schema ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def schema_version(self) -> int:
        """Return the newest applied migration, or 0 for an empty database."""

    @abc.abstractmethod
    async def storage_bytes(self) -> int:
        """Return how many bytes the database occupies on disk."""
