"""Where the database is: the target resolution of design §4.

Explicit ``url`` › explicit ``db_path`` › ``DATABASE_URL`` › ``ORCHESTRATOR_DB_PATH`` (or
``DATABASE_PATH``, seed 002's name) › ``data/orchestrator.db``. Settings are read from the process
environment, then from a ``.env`` file in the working directory (the environment wins).
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_plus, unquote_to_bytes, urlsplit

from dotenv import dotenv_values

from .errors import ValidationError, shown

DEFAULT_DB_PATH = "data/orchestrator.db"
DOTENV_FILE = ".env"
# Where the database is, in the order they are asked (the first set one wins).
URL_SETTINGS = ("DATABASE_URL",)
PATH_SETTINGS = ("ORCHESTRATOR_DB_PATH", "DATABASE_PATH")
# Query parameters of a PostgreSQL URL whose values are secrets: masked wherever it is shown.
# (``passfile`` is not: it names a file, which helps to diagnose and gives nothing away.)
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
# asyncpg's own default, made explicit so a timeout can say how long it waited.
DEFAULT_CONNECT_TIMEOUT = 60.0
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
    url: str  # SQLite: percent-encoded (sqlite_url), so parse_url(url) names this file again
    path: Path | None = None  # SQLite only

    def display(self) -> str:
        """Return the location without any password, for logs and the CLI."""
        if self.dialect is Dialect.SQLITE:
            return str(self.path)
        parts = urlsplit(self.url)
        userinfo, at, hosts = parts.netloc.rpartition("@")
        netloc = parts.netloc
        if at and ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
        query = "&".join(
            f"{field.partition('=')[0]}=***" if _query_name(field) in SECRET_PARAMETERS else field
            for field in parts.query.split("&")
        )
        return parts._replace(netloc=netloc, query=query).geturl()


def _query_name(field: str) -> str:
    """Return the decoded name of one ``name=value`` field of a query string."""
    return unquote_plus(field.partition("=")[0]).lower()


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """Return the ``sqlite:///`` URL of ``path``, percent-encoded: ``parse_url`` gives it back.

    The file system's bytes are encoded, so any name round-trips (``%``, ``?``, ``#``, spaces,
    names that are not UTF-8). A ``~`` is encoded too: a literal one means the home directory.
    """
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError as exc:  # a lone surrogate that no file system name decodes to
        raise ValidationError(f"the database path {shown(os.fspath(path))} cannot be a file "
                              f"name: {exc.reason} ({exc.object[exc.start:exc.end]!a})",
                              field="path") from None
    return "sqlite:///" + quote(raw, safe="/").replace("~", "%7E")


def postgres_connect_options(url: str) -> tuple[str, float | None]:
    """Take libpq's ``connect_timeout`` out of a PostgreSQL URL, for asyncpg.

    asyncpg sends query parameters it does not know to the server as settings, which refuses
    ``connect_timeout``; its ``timeout=`` argument does the same job.

    Returns:
        The URL without ``connect_timeout``, and the seconds to wait for a connection (None:
        no limit, as libpq reads 0 or less; asyncpg's 60 s when the URL gives none).

    Raises:
        ValidationError: ``connect_timeout`` is not a number.
    """
    parts = urlsplit(url)
    if not parts.query:
        return url, DEFAULT_CONNECT_TIMEOUT
    kept: list[str] = []
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    for field in parts.query.split("&"):
        if _query_name(field) != "connect_timeout":
            kept.append(field)
            continue
        value = unquote_plus(field.partition("=")[2]).strip()
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            raise ValidationError(
                f"connect_timeout must be a number of seconds, e.g. connect_timeout=10, "
                f"got {value!r}", field="url",
            )
        timeout = seconds if seconds > 0 else None  # the last one wins, as in libpq
    return parts._replace(query="&".join(kept)).geturl(), timeout


def _expand_home(text: str) -> str:
    """Expand a leading ``~`` or ``~user`` as a shell would; refuse one that names nobody."""
    if not text.startswith("~"):
        return text
    expanded = os.path.expanduser(text)
    if expanded == text:
        head = text.split("/", 1)[0]
        raise ValidationError(
            f"cannot expand {head!r} in database path {text!r}: no such user or home "
            f"directory; for a file or directory named so, write ./{text}", field="url",
        )
    return expanded


def _file_target(text: str) -> Target:
    """Return the SQLite target of a path, refusing the names that cannot be one."""
    if not text.strip():
        raise ValidationError("database path or URL is empty", field="url")
    if text == ":memory:":
        raise ValidationError(
            "':memory:' is not supported: orchestrator-db needs a database file that all its "
            "connections share (each connection to :memory: would see an empty database of "
            "its own); use a file, e.g. a temporary one", field="url",
        )
    path = Path(text)
    return Target(Dialect.SQLITE, sqlite_url(path), path)


def _decode(encoded: str) -> str:
    """Percent-decode a URL path into a file name (bytes that are not UTF-8 survive)."""
    return os.fsdecode(unquote_to_bytes(encoded))


def parse_url(url: str) -> Target:
    """Turn a ``sqlite:///path`` or ``postgresql://...`` URL (or a bare path) into a Target.

    A URL may be surrounded by spaces (as pasted into ``.env``); a bare path is taken as it is,
    but for a leading ``~``, which is the home directory.
    """
    stripped = url.strip()
    scheme = stripped.split("://", 1)[0].lower() if "://" in stripped else ""
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return _postgres_target("postgresql://" + stripped.split("://", 1)[1])
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        rest = stripped.split("://", 1)[1]
        for char, name, code in (("?", "query string", "%3F"), ("#", "fragment", "%23")):
            if char in rest:
                raise ValidationError(
                    f"sqlite URL {stripped!r} has a {name} ({char}{rest.split(char, 1)[1]}): "
                    f"SQLite URLs take no parameters, and it is not taken for part of the file "
                    f"name; drop it, or write a {char} in the file name as {code}", field="url",
                )
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
        encoded = rest[1:] if rest.startswith("/") else rest
        head, sep, tail = encoded.partition("/")
        # A literal ~ (not %7E) is the home directory, as in a path.
        text = (_expand_home(_decode(head)) + sep + _decode(tail) if head.startswith("~")
                else _decode(encoded))
        if not text:
            raise ValidationError(
                "sqlite URL needs a file path, e.g. sqlite:///data/orchestrator.db", field="url"
            )
        return _file_target(text)
    if scheme:
        raise ValidationError(
            f"unsupported database URL scheme {scheme!r}; use sqlite:///path or postgresql://...",
            field="url",
        )
    if not stripped:
        raise ValidationError("database path or URL is empty", field="url")
    return _file_target(_expand_home(url))


def _postgres_target(url: str) -> Target:
    """Check a ``postgresql://`` URL; values (a password) are never repeated in the message."""
    expected = "expected postgresql://user:password@host:5432/database"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        reason = "the port is not a number from 0 to 65535" if "Port" in str(exc) else str(exc)
        raise ValidationError(f"malformed PostgreSQL URL ({reason}); {expected}",
                              field="url") from None
    for field in parts.query.split("&") if parts.query else ():
        if "=" not in field:
            raise ValidationError(
                f"malformed PostgreSQL URL: query field {unquote_plus(field)!r} has no value; "
                "write name=value", field="url",
            )
    postgres_connect_options(url)  # a bad connect_timeout is refused now, not at connect
    return Target(Dialect.POSTGRES, url)


def resolve_target(
    db_path: str | os.PathLike[str] | None = None, *, url: str | None = None
) -> Target:
    """Resolve where the database lives from arguments and the environment."""
    if url:
        return parse_url(url)
    if db_path is not None:
        return parse_url(os.fsdecode(db_path))
    return configured_target() or parse_url(DEFAULT_DB_PATH)


def configured_target() -> Target | None:
    """Return the database the settings name (environment, then ``.env``), or None."""
    for name in URL_SETTINGS + PATH_SETTINGS:
        value = setting(name)
        if value:
            return parse_url(value)
    return None
