"""Where the database is: the target resolution of design §4.

Explicit ``url`` › explicit ``db_path`` › ``DATABASE_URL`` › ``ORCHESTRATOR_DB_PATH`` ›
``data/orchestrator.db``.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import ValidationError

DEFAULT_DB_PATH = "data/orchestrator.db"


class Dialect(enum.Enum):
    """The database engines orchestrator-db speaks."""

    SQLITE = "sqlite"
    POSTGRES = "postgresql"


@dataclass(frozen=True)
class Target:
    """A resolved database location."""

    dialect: Dialect
    url: str
    path: Path | None = None  # SQLite only

    def display(self) -> str:
        """Return the location without any password, for logs and the CLI."""
        if self.dialect is Dialect.SQLITE:
            return str(self.path)
        parts = urlsplit(self.url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return parts._replace(netloc=netloc).geturl()
        return self.url


def parse_url(url: str) -> Target:
    """Turn a ``sqlite:///path`` or ``postgresql://...`` URL (or a bare path) into a Target."""
    url = url.strip()
    if not url:
        raise ValidationError("database URL is empty", field="url")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        rest = url.split("://", 1)[1]
        normalised = "postgresql://" + rest
        try:
            parts = urlsplit(normalised)
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError as exc:
            raise ValidationError(
                f"malformed PostgreSQL URL ({exc}); expected postgresql://user:password@host:5432"
                "/database", field="url",
            ) from None
        return Target(Dialect.POSTGRES, normalised)
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        rest = url.split("://", 1)[1]
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
        raw = unquote(rest[1:] if rest.startswith("/") else rest)
        if not raw or raw == ":memory:":
            raise ValidationError(
                "sqlite URL needs a file path, e.g. sqlite:///data/orchestrator.db", field="url"
            )
        path = Path(raw)
        return Target(Dialect.SQLITE, f"sqlite:///{path}", path)
    if scheme:
        raise ValidationError(
            f"unsupported database URL scheme {scheme!r}; use sqlite:///path or postgresql://...",
            field="url",
        )
    path = Path(url)
    return Target(Dialect.SQLITE, f"sqlite:///{path}", path)


def resolve_target(
    db_path: str | os.PathLike[str] | None = None, *, url: str | None = None
) -> Target:
    """Resolve where the database lives from arguments and the environment."""
    if url:
        return parse_url(url)
    if db_path is not None:
        return parse_url(os.fspath(db_path))
    env_url = os.environ.get("DATABASE_URL")
    if env_url:
        return parse_url(env_url)
    env_path = os.environ.get("ORCHESTRATOR_DB_PATH")
    if env_path:
        return parse_url(env_path)
    return parse_url(DEFAULT_DB_PATH)
