"""User paths reach the disk as given: a target's URL names the same file again (whatever its
name), explicit paths are not trimmed, ``~`` is the home directory, and what cannot be a file
(``:memory:``, URL parameters) is refused with a reason instead of becoming a file name."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from orchestrator_db import (
    DatabaseManager,
    OrchestratorDBHandler,
    SyncDatabaseManager,
    ValidationError,
)
from orchestrator_db.config import parse_url, resolve_target
from orchestrator_db.transfer import copy_database

SETTINGS = ("DATABASE_URL", "ORCHESTRATOR_DB_PATH", "DATABASE_PATH")
HOSTILE_NAMES = [
    "a%41b.db", "100%.db", "%7E.db", "%%.db", "sp ace.db", " lead.db", "trail.db ", "q?mode=ro.db",
    "hash#frag.db", "amp&x=1.db", "plus+sign.db", "semi;colon.db", "ünïcødé ☃.db", "~tilde.db",
    "new\nline.db", "back\\slash.db", "@at:colon.db",
    os.fsdecode(b"not-utf8-\xff\xfe.db"),  # a name the file system has but UTF-8 cannot spell
]


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_url_names_the_same_file_again(name: str) -> None:
    for path in (Path("/srv/d%41ta dir") / name, Path("rel#dir") / name):
        target = resolve_target(path)
        assert target.path == path
        again = parse_url(target.url)
        assert (again.path, again.url) == (path, target.url)
        assert resolve_target(url=f"  {target.url}\n").path == path  # a URL may be padded


file_names = st.one_of(
    st.text(st.characters(exclude_characters="/\x00"), min_size=1),
    st.binary(min_size=1).map(os.fsdecode).filter(lambda n: "/" not in n and "\x00" not in n),
).filter(lambda name: name not in (".", ".."))


@given(file_names)
@example("a\ud800b.db")  # a lone surrogate outside os.fsdecode's range: no file has that name
def test_any_file_name_round_trips(name: str) -> None:
    path = Path("/base") / name
    try:
        os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate no file system name decodes to: refused
        with pytest.raises(ValidationError, match="cannot be a file name"):
            resolve_target(path)
        return
    assert parse_url(resolve_target(path).url).path == path


def test_handler_writes_to_the_managers_file(tmp_path: Path) -> None:
    directory = tmp_path / "x #?%41"
    log = logging.getLogger(f"test.config_paths.{tmp_path.name}")
    log.propagate = False
    with SyncDatabaseManager(directory / "a%41b.db") as db:
        handler = OrchestratorDBHandler(db, flush_interval_ms=1)
        log.addHandler(handler)
        try:
            log.warning("landed")
            handler.flush()
        finally:
            log.removeHandler(handler)
            handler.close()
        assert [r["message"] for r in db.list_system_logs(source=log.name)] == ["landed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x #?%41"]
    assert sorted(p.name for p in directory.iterdir() if p.suffix == ".db") == ["a%41b.db"]


async def test_copy_opens_the_named_files(tmp_path: Path) -> None:
    source, destination = tmp_path / "src%41 #1.db", tmp_path / "dst%41 ?2.db"
    async with DatabaseManager(source) as db:
        await db.create_system_log("moved")
    result = await copy_database(source, destination)
    assert result.tables
    async with DatabaseManager(destination) as db:
        assert [r["message"] for r in await db.list_system_logs()] == ["moved"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == [
        "dst%41 ?2.db", "src%41 #1.db"]


def test_explicit_path_is_not_trimmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with SyncDatabaseManager(" lead.db") as db:
        assert db.db_path == " lead.db"
    with SyncDatabaseManager("trail.db ") as sync_db:
        assert sync_db.db_path == "trail.db "
    assert (tmp_path / " lead.db").is_file() and (tmp_path / "trail.db ").is_file()
    assert not (tmp_path / "lead.db").exists() and not (tmp_path / "trail.db").exists()


@pytest.mark.parametrize("how", ["argument", "url", "environment", "dotenv"])
async def test_tilde_is_the_home_directory(how: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    if how == "argument":
        manager = DatabaseManager("~/dbs/x.db")
    elif how == "url":
        manager = DatabaseManager(url="sqlite:///~/dbs/x.db")
    elif how == "environment":
        monkeypatch.setenv("ORCHESTRATOR_DB_PATH", "~/dbs/x.db")
        manager = DatabaseManager()
    else:
        (work / ".env").write_text("ORCHESTRATOR_DB_PATH=~/dbs/x.db\n")
        manager = DatabaseManager()
    assert manager.target.path == home / "dbs" / "x.db"
    async with manager:
        pass
    assert (home / "dbs" / "x.db").is_file()
    assert list(work.iterdir()) == ([work / ".env"] if how == "dotenv" else [])


def test_only_a_literal_leading_tilde_is_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_target(url="sqlite:///~/x.db").path == tmp_path / "home" / "x.db"
    assert resolve_target(url="sqlite:///%7E/x.db").path == Path("~/x.db")
    assert resolve_target("./~/x.db").path == Path("~/x.db")
    assert resolve_target("a/~/x.db").path == Path("a/~/x.db")


def test_tilde_of_nobody_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"no such user.*\./~nosuchuser-z9/x\.db"):
        resolve_target("~nosuchuser-z9/x.db")


@pytest.mark.parametrize("given", [":memory:", "sqlite:///:memory:", "sqlite:///%3Amemory%3A"])
def test_memory_is_refused_alike(given: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match=r":memory:' is not supported.*share"):
        DatabaseManager(given)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("url", "shown"), [
    ("sqlite:///x.db?mode=ro", "query string (?mode=ro)"),
    ("sqlite:////abs/x.db?", "query string (?)"),
    ("sqlite:///x.db#frag", "fragment (#frag)"),
])
def test_sqlite_url_parameters_are_refused(url: str, shown: str) -> None:
    with pytest.raises(ValidationError, match="SQLite URLs take no parameters") as info:
        resolve_target(url=url)
    assert shown in str(info.value)
    # percent-encoded, they are part of the file name; in a bare path, they always are
    assert resolve_target(url=url.replace("?", "%3F").replace("#", "%23")).path == Path(
        url.removeprefix("sqlite:///"))
    assert resolve_target(url.removeprefix("sqlite:///")).path == Path(
        url.removeprefix("sqlite:///"))
