"""Where the database is: the target resolution of design §4.

Explicit ``url`` › explicit ``db_path`` › ``DATABASE_URL`` › ``ORCHESTRATOR_DB_PATH`` (or
``DATABASE_PATH``, seed 002's name) › ``data/orchestrator.db``. Settings are read from the process
environment, then from a ``.env`` file in the working directory (the environment wins).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

from .errors import ValidationError

DEFAULT_DB_PATH = "data/orchestrator.db"
DOTENV_FILE = ".env"
# Where the database is, in the order they are asked (the first set one wins).
URL_SETTINGS = ("DATABASE_URL",)
PATH_SETTINGS = ("ORCHESTRATOR_DB_PATH", "DATABASE_PATH")
_dotenv_cache: dict[Path, tuple[tuple[int, int], dict[str, str]]] = {}


def dotenv_settings(path: str | os.PathLike[str] = DOTENV_FILE) -> dict[str, str]:
    """Return the settings of a ``.env`` file (empty when there is none), parsed by python-dotenv.

    Read again only when the file changes (size or modification time).
    """
    file = Path(path).absolute()
    try:
        info = file.stat()
    except OSError:
        return {}
    stamp = (info.st_mtime_ns, info.st_size)
    cached = _dotenv_cache.get(file)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        values = {k: v for k, v in dotenv_values(file).items() if v is not None}
    except (OSError, UnicodeDecodeError):
        values = {}
    _dotenv_cache[file] = (stamp, values)
    return values


def setting(name: str) -> str | None:
    """Return a setting: the process environment, else ``.env`` in the working directory."""
    value = os.environ.get(name)
    if value:
        return value
    return dotenv_settings().get(name) or None


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
    return configured_target() or parse_url(DEFAULT_DB_PATH)


def configured_target() -> Target | None:
    """Return the database the settings name (environment, then ``.env``), or None."""
    for name in URL_SETTINGS + PATH_SETTINGS:
        value = setting(name)
        if value:
            return parse_url(value)
    return None
