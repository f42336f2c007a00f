"""Differential fuzzing of the library: the same hostile inputs on SQLite and on PostgreSQL.

Every call must end the same way on both engines: the same typed error (a subclass of
OrchestratorDBError, with the same ``field``), or success with identical values read back,
equal to what the oracle in ``fuzz_inputs`` says must be stored. A raw exception (a driver
error, UnicodeEncodeError, OverflowError, RecursionError, pydantic's ValidationError) fails.

Each example starts from a valid call and replaces one to three of its arguments with hostile
values, so that accepted and refused calls are both frequent.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fuzz_inputs import (
    AGENT,
    AGENT_LOG,
    AGENT_LOG_UPDATE,
    AGENT_STATUSES,
    AGENT_UPDATE,
    CAPABILITIES,
    COMPLETE_PROMPT,
    CONTENT,
    COST,
    DETAILS,
    JSON_FIELDS,
    LEVEL,
    MESSAGE,
    METADATA,
    NAME,
    ORCHESTRATOR_AGENT,
    ORCHESTRATOR_AGENT_UPDATE,
    PROMPT,
    PROMPT_UPDATE,
    SHORT,
    SYSTEM_LOG,
    SYSTEM_LOG_UPDATE,
    TIMESTAMP,
    TOKENS,
    Accepted,
    Engines,
    Refused,
    Spec,
    Verdict,
    assert_stored,
    canon,
    count,
    fuzz_settings,
    huge_int,
    level_values,
    mutate,
    refusals,
    show,
    text,
    text_values,
    timestamp_values,
    verdicts,
)
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_db import DatabaseManager, tables
from orchestrator_db.errors import (
    ConstraintError,
    DuplicateError,
    OrchestratorDBError,
    ValidationError,
)
from orchestrator_db.tables import COLUMNS

# Fields the oracle does not predict after a success (filled by the library: ids, now).
GENERATED = {"id", "created_at", "updated_at", "orchestrator_agent_id", "agent_id"}


# running the same call on both engines -------------------------------------------------------
@dataclass
class Ok:
    values: dict[str, Any]  # what the call returned on each engine


@dataclass
class Err:
    error: OrchestratorDBError

    def __repr__(self) -> str:
        return f"{type(self.error).__name__}(field={self.error.field!r}: {self.error.message:.200})"


Outcome = Ok | Err
Call = Callable[[str, DatabaseManager], Awaitable[Any]]


async def on_both(engines: Engines, call: Call, what: str) -> Outcome:
    """Run ``call`` on each engine; the same typed error or success on both, never a raw one."""
    outcomes: list[Ok | Err] = []
    for name, db in engines:
        try:
            outcomes.append(Ok({name: await call(name, db)}))
        except OrchestratorDBError as exc:
            outcomes.append(Err(exc))
        except Exception as exc:  # the bug this suite hunts: an error outside the tree
            raise AssertionError(f"{what}: raw {type(exc).__module__}.{type(exc).__name__} on "
                                 f"{name}: {str(exc)[:300]}") from exc
    lite, pg = outcomes
    if isinstance(lite, Err) or isinstance(pg, Err):
        assert isinstance(lite, Err) and isinstance(pg, Err), (
            f"{what}: sqlite {lite!r}, postgresql {pg!r}")
        assert (type(lite.error), lite.error.field) == (type(pg.error), pg.error.field), (
            f"{what}: sqlite {lite!r}, postgresql {pg!r}")
        return lite
    assert isinstance(pg, Ok)
    assert_same(lite.values["sqlite"], pg.values["postgresql"], what)
    return Ok({**lite.values, **pg.values})


def comparable(value: Any, *, ignore: frozenset[str] = frozenset()) -> Any:
    """A row (or rows) with generated fields dropped and JSON canonical; ids as a placeholder."""
    if isinstance(value, list | tuple):
        return [comparable(v, ignore=ignore) for v in value]
    if isinstance(value, Mapping):
        return {k: canon(v) if k in JSON_FIELDS else comparable(v)
                for k, v in value.items() if k not in GENERATED and k not in ignore}
    if hasattr(value, "items") and hasattr(value, "next_cursor"):  # a Page
        return comparable(value.items, ignore=ignore)
    if isinstance(value, str) and _is_uuid(value):
        return "<id>"
    return value


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def assert_same(lite: Any, pg: Any, what: str, ignore: frozenset[str] = frozenset()) -> None:
    assert comparable(lite, ignore=ignore) == comparable(pg, ignore=ignore), (
        f"{what}: engines differ:\n sqlite     {show(lite, 600)}\n postgresql {show(pg, 600)}")


def check(what: str, outcome: Outcome, expected: Mapping[str, Verdict],
          otherwise: type[OrchestratorDBError] | None = None) -> bool:
    """The outcome is what the oracle says: ValidationError if any argument is refused, else
    ``otherwise`` (an error the state explains, such as a duplicate name), else success."""
    if refused := refusals(expected):
        assert isinstance(outcome, Err) and isinstance(outcome.error, ValidationError), (
            f"{what}: expected a ValidationError for {refused}, got {outcome!r}")
        return False
    if otherwise is not None:
        assert isinstance(outcome, Err) and isinstance(outcome.error, otherwise), (
            f"{what}: expected {otherwise.__name__}, got {outcome!r}")
        return False
    assert isinstance(outcome, Ok), f"{what}: expected success, got {outcome!r}"
    return True


def tally(specs: Mapping[str, Spec], hostile: list[str], expected: Mapping[str, Verdict]
          ) -> None:
    for name in hostile:
        count(specs[name].kind, "refused" if isinstance(expected.get(name), Refused)
              else "accepted")


def not_null(expected: dict[str, Verdict], args: Mapping[str, Any], *fields: str) -> None:
    """An update may not set these columns to None: the oracle refuses it."""
    for field in fields:
        if field in args and args[field] is None:
            expected[field] = Refused(f"{field} cannot be set to None")


def unless_now(expected: Mapping[str, Verdict], *fields: str) -> dict[str, Verdict]:
    """The expectations without timestamps left to the library (None: it fills in now)."""
    return {k: v for k, v in expected.items() if not (k in fields and v == Accepted(None))}


async def parents(engines: Engines) -> dict[str, dict[str, str]]:
    """Fresh parent rows on each engine: an orchestrator agent, an agent, a prompt."""
    ids: dict[str, dict[str, str]] = {}
    for name, db in engines:
        oa = await db.create_orchestrator_agent(f"fuzz-{uuid.uuid4()}")
        agent = await db.create_agent(oa, "fuzz-session")
        prompt = await db.create_prompt(agent, "p")
        ids[name] = {"oa": oa, "agent": agent, "prompt": prompt}
    return ids


async def read_back(engines: Engines, getter: str, ids: Mapping[str, str], what: str
                    ) -> dict[str, dict[str, Any]]:
    """Each engine's row by its own id; the two must agree (generated fields aside)."""
    rows = {name: await getattr(db, getter)(ids[name]) for name, db in engines}
    assert rows["sqlite"] is not None and rows["postgresql"] is not None, what
    assert_same(rows["sqlite"], rows["postgresql"], what,
                ignore=frozenset({"started_at", "completed_at"}))
    return rows


async def attempt(engines: Engines, what: str, specs: Mapping[str, Spec], args: dict[str, Any],
                  hostile: list[str], call: Call, *required: str
                  ) -> tuple[dict[str, Any] | None, dict[str, Verdict]]:
    """Run ``call`` on both engines; its outcome must be the oracle's for ``args`` (the
    ``required`` columns may not be None). Return what each engine returned, or None when the
    call was refused as expected, and the oracle's verdicts."""
    expected = verdicts(specs, args)
    not_null(expected, args, *required)
    outcome = await on_both(engines, call, what)
    tally(specs, hostile, expected)
    if not check(what, outcome, expected):
        return None, expected
    assert isinstance(outcome, Ok)
    return outcome.values, expected


async def check_update(engines: Engines, record: str, specs: Mapping[str, Spec],
                       ids: Mapping[str, str], update: dict[str, Any], changed: list[str],
                       *required: str) -> None:
    """``update_<record>(id, **update)`` on both engines: the outcome the oracle gives (the
    ``required`` columns may not become None), and the row read back as it says."""
    what = f"update_{record}({show(update, 400)})"
    done, expected = await attempt(
        engines, what, specs, update, changed,
        lambda name, db: getattr(db, f"update_{record}")(ids[name], **update), *required)
    if done is not None:
        assert_stored(what, await read_back(engines, f"get_{record}", ids, what), expected)


# orchestrator agents ---------------------------------------------------------------------------
@fuzz_settings()
@given(data=st.data())
async def test_orchestrator_agent_fields(engines: Engines, data: st.DataObject) -> None:
    args, hostile = mutate(data, ORCHESTRATOR_AGENT, {
        "name": f"oa-{uuid.uuid4()}", "description": "d", "agent_type": None,
        "capabilities": None, "default_model": None, "metadata": None})
    # Everything is drawn first: what is drawn must not depend on the database's state.
    update, changed = mutate(data, ORCHESTRATOR_AGENT_UPDATE, {})
    expected = verdicts(ORCHESTRATOR_AGENT, args)
    what = f"create_orchestrator_agent({show(args, 400)})"
    outcome = await on_both(engines, lambda name, db: db.create_orchestrator_agent(**args), what)
    taken = ("name", args["name"]) in engines.taken
    if isinstance(outcome, Ok):
        engines.taken.add(("name", args["name"]))
    tally(ORCHESTRATOR_AGENT, hostile, expected)
    if not check(what, outcome, expected, DuplicateError if taken else None):
        return
    assert isinstance(outcome, Ok)
    ids = outcome.values
    assert_stored(what, await read_back(engines, "get_orchestrator_agent", ids, what), expected)

    expected = verdicts(ORCHESTRATOR_AGENT_UPDATE, update)
    not_null(expected, update, "name", "status")
    what = f"update_orchestrator_agent({show(update, 400)})"
    outcome = await on_both(
        engines, lambda name, db: db.update_orchestrator_agent(ids[name], **update), what)
    taken = "name" in update and update["name"] != args["name"] and (
        "name", update["name"]) in engines.taken
    if isinstance(outcome, Ok) and "name" in update:  # renamed: the old name is free again
        engines.taken.discard(("name", args["name"]))
        engines.taken.add(("name", update["name"]))
    tally(ORCHESTRATOR_AGENT_UPDATE, changed, expected)
    if check(what, outcome, expected, DuplicateError if taken else None):
        assert_stored(what, await read_back(engines, "get_orchestrator_agent", ids, what),
                      expected)


# agents ----------------------------------------------------------------------------------------
@fuzz_settings()
@given(data=st.data())
async def test_agent_fields(engines: Engines, data: st.DataObject) -> None:
    parent = await parents(engines)
    args, hostile = mutate(data, AGENT, {"session_id": "s", "name": None, "model": None,
                                         "metadata": None, "started_at": None,
                                         "completed_at": None})
    args["status"] = data.draw(st.sampled_from(AGENT_STATUSES), label="status")
    update, changed = mutate(data, AGENT_UPDATE, {})
    what = f"create_agent({show(args, 400)})"
    ids, expected = await attempt(engines, what, AGENT, args, hostile,
                                  lambda name, db: db.create_agent(parent[name]["oa"], **args))
    if ids is None:
        return
    rows = await read_back(engines, "get_agent", ids, what)
    assert_stored(what, rows, unless_now(expected, "started_at", "completed_at"))

    await check_update(engines, "agent", AGENT_UPDATE, ids, update, changed, "session_id")


# prompts ---------------------------------------------------------------------------------------
@fuzz_settings()
@given(data=st.data())
async def test_prompt_fields(engines: Engines, data: st.DataObject) -> None:
    parent = await parents(engines)
    args, hostile = mutate(data, PROMPT, {
        "content": "c", "response": None, "model": None, "tokens_input": 0, "tokens_output": 0,
        "cost_usd": 0.0, "completed_at": None, "status": "pending"})
    done, completed = mutate(data, COMPLETE_PROMPT, {"response": "r", "tokens_input": 1,
                                                     "tokens_output": 2, "cost_usd": 0.5})
    update, changed = mutate(data, PROMPT_UPDATE, {})
    what = f"create_prompt({show(args, 400)})"
    created, expected = await attempt(
        engines, what, PROMPT, args, hostile,
        lambda name, db: db.create_prompt(parent[name]["agent"], **args))
    if created is not None:
        assert_stored(what, await read_back(engines, "get_prompt", created, what), expected)

    ids = {name: parent[name]["prompt"] for name in parent}
    what = f"complete_prompt({show(done, 400)})"
    answered, expected = await attempt(
        engines, what, COMPLETE_PROMPT, done, completed, lambda name, db: db.complete_prompt(
            ids[name], done["response"], tokens_input=done["tokens_input"],
            tokens_output=done["tokens_output"], cost_usd=done["cost_usd"]))
    if answered is not None:
        assert_stored(what, await read_back(engines, "get_prompt", ids, what), expected)

    await check_update(engines, "prompt", PROMPT_UPDATE, ids, update, changed, "content",
                       "tokens_input", "tokens_output", "cost_usd", "status")


# logs ------------------------------------------------------------------------------------------
@fuzz_settings()
@given(data=st.data())
async def test_agent_log_fields(engines: Engines, data: st.DataObject) -> None:
    parent = await parents(engines)
    base = {"message": "m", "log_type": "event", "details": None, "created_at": None,
            "log_level": "INFO"}
    rows = [mutate(data, AGENT_LOG, base)
            for _ in range(data.draw(st.integers(1, 3), label="rows"))]
    update, changed = mutate(data, AGENT_LOG_UPDATE, {})
    if len(rows) == 1:
        args = rows[0][0]
        what = f"create_agent_log({show(args, 400)})"
        call: Call = lambda name, db: db.create_agent_log(parent[name]["agent"], **args)  # noqa: E731
    else:
        what = f"create_agent_logs({show([a for a, _ in rows], 600)})"
        call = lambda name, db: db.create_agent_logs(  # noqa: E731
            [{"agent_id": parent[name]["agent"], **a} for a, _ in rows])
    expected_rows = [verdicts(AGENT_LOG, a) for a, _ in rows]
    outcome = await on_both(engines, call, what)
    for (_, hostile), expected in zip(rows, expected_rows, strict=True):
        tally(AGENT_LOG, hostile, expected)
    # One refused row refuses the call, and nothing is written.
    all_expected = {f"row {i} {k}": v for i, e in enumerate(expected_rows) for k, v in e.items()}
    if not check(what, outcome, all_expected):
        for name, db in engines:
            assert await db.list_agent_logs(parent[name]["agent"]) == [], f"{what}: rows written"
        return
    assert isinstance(outcome, Ok)
    first = {}
    for index, expected in enumerate(expected_rows):
        ids = {name: (value if isinstance(value, str) else value[index])
               for name, value in outcome.values.items()}
        first = first or ids
        stored = await read_back(engines, "get_agent_log", ids, f"{what} row {index}")
        assert_stored(f"{what} row {index}", stored, unless_now(expected, "created_at"))

    await check_update(engines, "agent_log", AGENT_LOG_UPDATE, first, update, changed,
                       "message", "log_type", "log_level")


@fuzz_settings()
@given(data=st.data())
async def test_system_log_fields(engines: Engines, data: st.DataObject) -> None:
    args, hostile = mutate(data, SYSTEM_LOG, {"message": "m", "source": None, "details": None,
                                              "created_at": None, "log_level": "INFO"})
    update, changed = mutate(data, SYSTEM_LOG_UPDATE, {})
    what = f"create_system_log({show(args, 400)})"
    ids, expected = await attempt(engines, what, SYSTEM_LOG, args, hostile,
                                  lambda name, db: db.create_system_log(**args))
    if ids is None:
        return
    assert_stored(what, await read_back(engines, "get_system_log", ids, what),
                  unless_now(expected, "created_at"))

    await check_update(engines, "system_log", SYSTEM_LOG_UPDATE, ids, update, changed,
                       "message", "log_level")


# filters ---------------------------------------------------------------------------------------
_clock = itertools.count(1)


def cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


filter_text = st.one_of(text_values(SHORT), huge_int,
                        st.sampled_from([5, 2**70, True, 1.5, b"x", ["x"], None]))
limits = st.sampled_from([1, 2, 100, 1000, 1001, 0, -1, True, 2.5, "5", None, 2**63, 10**5000])
orders = st.sampled_from(["asc", "desc", "ASC", "", None, 1, 2**70, 10**5000])
offsets = st.sampled_from([None, 0, 1, 3, -1, True, 2.5, "1", 2**63 - 1, 2**63])
hostile_cursors = st.one_of(
    text_values(SHORT),
    st.builds(lambda ts, i, o: cursor_of([ts, i, o]),
              timestamp_values.filter(lambda v: isinstance(v, str)),
              st.sampled_from([str(uuid.UUID(int=0)), "x", "\udc80"]) | st.uuids().map(str),
              st.sampled_from(["asc", "desc", "up"])),
    st.sampled_from([cursor_of({"a": 1, "b": 2, "c": 3}), cursor_of([1, 2, 3]),
                     cursor_of("abc"), cursor_of([10**4000, "x", "asc"]),
                     cursor_of("[" * 300), "====", ""]),
)
FILTERED_COLUMN = {"agents": "session_id", "prompts": "model", "agent_logs": "log_type",
                   "system_logs": "source"}


@fuzz_settings()
@given(data=st.data())
async def test_list_filters(engines: Engines, data: st.DataObject) -> None:
    """Filtered pages hold the same rows on both engines; hostile filters fail alike."""
    parent = await parents(engines)
    values = data.draw(st.lists(text_values(SHORT), min_size=1, max_size=3), label="values")
    base = 1_700_000_000 + next(_clock) * 10
    for i, value in enumerate(values):
        # Distinct times: a page's order, and so its rows, are the same on both engines.
        at = stamp(base + i)
        for call in (
            lambda name, db, v=value, t=at: db.create_agent_log(
                parent[name]["agent"], "m", log_type=v, created_at=t),
            lambda name, db, v=value, t=at: db.create_system_log("m", source=v, created_at=t),
            lambda name, db, v=value: db.create_prompt(parent[name]["agent"], "c", model=v),
            lambda name, db, v=value: db.create_agent(parent[name]["oa"], v),
        ):
            await on_both(engines, call, f"a row holding {show(value, 200)}")

    kind = data.draw(st.sampled_from(sorted(FILTERED_COLUMN)), label="table")
    filters: dict[str, Any] = {}
    for name, strategy in (
        (FILTERED_COLUMN[kind], st.sampled_from(values) | filter_text),
        ("session_id", st.sampled_from(["fuzz-session", *values]) | filter_text),
        ("since", timestamp_values | st.sampled_from([stamp(base), stamp(base + 1)])),
        ("until", timestamp_values | st.sampled_from([stamp(base + 1), stamp(base + 2)])),
        ("limit", limits), ("order", orders), ("offset", offsets), ("cursor", hostile_cursors),
        ("log_level", level_values), ("min_level", level_values),
    ):
        if name in ("log_level", "min_level") and not kind.endswith("logs"):
            continue
        if name == "session_id" and kind in ("system_logs", "agents"):
            continue
        if data.draw(st.booleans(), label=f"use {name}"):
            filters[name] = data.draw(strategy, label=name)
    what = f"page_{kind}({show(filters, 500)})"
    page = await on_both(engines, lambda name, db: getattr(db, f"page_{kind}")(**filters), what)
    count("filter", "refused" if isinstance(page, Err) else "accepted")
    if isinstance(page, Err):
        assert isinstance(page.error, ValidationError), f"{what}: {page!r}"
        return
    assert isinstance(page, Ok)
    # The next page, from each engine's own cursor, holds the same rows too.
    cursors = {name: p.next_cursor for name, p in page.values.items()}
    assert (cursors["sqlite"] is None) == (cursors["postgresql"] is None), what
    if cursors["sqlite"] is not None:
        rest = {k: v for k, v in filters.items() if k not in ("cursor", "offset")}
        await on_both(engines, lambda name, db: getattr(db, f"page_{kind}")(
            **rest, cursor=cursors[name]), f"{what}, page 2")


@pytest.mark.parametrize("value", ["a\udc80", "a\x00b", "\ud800"])
async def test_filters_refuse_what_no_row_can_hold(engines: Engines, value: str) -> None:
    """Filter text no stored value can equal is a ValidationError, not an empty page."""
    for kind, column in FILTERED_COLUMN.items():
        outcome = await on_both(engines, lambda name, db, k=kind, c=column: getattr(
            db, f"list_{k}")(**{c: value}), f"list_{kind}({column}={value!r})")
        assert isinstance(outcome, Err) and isinstance(outcome.error, ValidationError)


# import_rows -----------------------------------------------------------------------------------
IMPORT_SPECS = {
    "system_logs": {"message": text(MESSAGE, optional=False), "source": text(SHORT),
                    "details": DETAILS, "log_level": LEVEL, "created_at": TIMESTAMP},
    "agent_logs": {"message": text(MESSAGE, optional=False),
                   "log_type": text(SHORT, optional=False), "details": DETAILS,
                   "log_level": LEVEL, "created_at": TIMESTAMP},
    "prompts": {"content": text(CONTENT, optional=False), "response": text(CONTENT),
                "model": text(SHORT), "tokens_input": TOKENS, "tokens_output": TOKENS,
                "cost_usd": COST, "created_at": TIMESTAMP, "completed_at": TIMESTAMP},
    "agents": {"session_id": text(NAME, min_size=1, optional=False), "name": text(SHORT),
               "model": text(SHORT), "metadata": METADATA, "started_at": TIMESTAMP,
               "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
    "orchestrator_agents": {"name": text(NAME, min_size=1, optional=False),
                            "description": text(CONTENT), "capabilities": CAPABILITIES,
                            "metadata": METADATA, "created_at": TIMESTAMP,
                            "updated_at": TIMESTAMP},
}
ids_values = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                       st.uuids().map(lambda u: u.hex), text_values(SHORT), st.just(None),
                       st.just(5))
NOW = "2024-05-01T12:00:00+00:00"


def valid_row(table: str, oa: str, agent: str) -> dict[str, Any]:
    rows = {
        "system_logs": {"log_level": "INFO", "source": None, "message": "m", "details": None},
        "agent_logs": {"agent_id": agent, "log_level": "INFO", "log_type": "event",
                       "message": "m", "details": None},
        "prompts": {"agent_id": agent, "content": "c", "response": None, "model": None,
                    "status": "pending", "tokens_input": 0, "tokens_output": 0,
                    "cost_usd": 0.0, "completed_at": None},
        "agents": {"orchestrator_agent_id": oa, "session_id": "s", "name": None, "model": None,
                   "status": "pending", "metadata": None, "updated_at": NOW, "started_at": None,
                   "completed_at": None},
        "orchestrator_agents": {"name": f"imp-{uuid.uuid4()}", "description": None,
                                "agent_type": None, "capabilities": None, "default_model": None,
                                "status": "active", "metadata": None, "updated_at": NOW},
    }
    row = {"id": str(uuid.uuid4()), **rows[table], "created_at": NOW}
    # Columns added since (nullable, as a migration adds them) are left empty.
    return {column: row.get(column) for column in COLUMNS[table]}


def canonical_id(value: Any) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


@fuzz_settings()
@given(data=st.data())
async def test_import_rows(engines: Engines, data: st.DataObject) -> None:
    """import_rows keeps ids and timestamps: the very same row reads back on both engines."""
    oa, agent = str(uuid.uuid4()), str(uuid.uuid4())
    for table, row in (("orchestrator_agents", valid_row("orchestrator_agents", oa, agent)
                        | {"id": oa}), ("agents", valid_row("agents", oa, agent) | {"id": agent})):
        await on_both(engines, lambda name, db, t=table, r=row: db.import_rows(t, [r]),
                      f"import a parent into {table}")
    table = data.draw(st.sampled_from(sorted(IMPORT_SPECS)), label="table")
    specs = IMPORT_SPECS[table]
    row, hostile = mutate(data, specs, valid_row(table, oa, agent))
    expected = verdicts(specs, row)
    if data.draw(st.booleans(), label="hostile id"):
        row["id"] = data.draw(ids_values, label="id")
    shape = data.draw(st.sampled_from(["as is", "as is", "as is", "missing", "unknown"]),
                      label="shape")
    if shape == "missing":
        missing = data.draw(st.sampled_from(sorted(row)), label="missing column")
        del row[missing]
        # Columns a later migration added may be left out (exports of older versions).
        if missing in getattr(tables, "ADDED_COLUMNS", {}).get(table, ()):
            shape = "as is"
    elif shape == "unknown":
        row[data.draw(st.text(max_size=8).filter(lambda k: k not in row), label="column")] = 1
    what = f"import_rows({table!r}, [{show(row, 500)}])"
    outcome = await on_both(engines, lambda name, db: db.import_rows(table, [row]), what)
    tally(specs, hostile, expected)

    row_id = canonical_id(row.get("id"))
    if shape != "as is":
        expected["shape"] = Refused(f"a {shape} column")
    elif row["id"] is not None and row_id is None:
        expected["id"] = Refused("not a UUID")
    otherwise: type[OrchestratorDBError] | None = None
    if (table, str(row_id)) in engines.taken or (
            table == "orchestrator_agents" and ("name", row.get("name")) in engines.taken):
        otherwise = DuplicateError
    # import_rows leaves NOT NULL ids and timestamps to the database: a ConstraintError.
    if any(row.get(c, "") is None for c in ("id", "created_at", "updated_at")):
        otherwise = ConstraintError
    if isinstance(outcome, Ok):  # taken, whatever the checks below say
        engines.taken.add((table, str(row_id)))
        if table == "orchestrator_agents":
            engines.taken.add(("name", row["name"]))
    accepted = check(what, outcome, expected, otherwise)
    count("import_rows", "accepted" if accepted else "refused")
    if not accepted:
        return
    assert row_id is not None
    getter = f"get_{table.removesuffix('s')}"
    stored = {name: await getattr(db, getter)(row_id) for name, db in engines}
    lite, pg = ({k: canon(v) if k in JSON_FIELDS else v for k, v in r.items()}
                for r in (stored["sqlite"], stored["postgresql"]))
    assert lite == pg, (f"{what}: engines differ:\n {show(stored['sqlite'], 500)}\n "
                        f"{show(stored['postgresql'], 500)}")
    assert_stored(what, stored, {k: v for k, v in expected.items() if k in specs})


# regressions: what the suite found in models.py, validation.py and jsoncodec.py (fixed) ---------
async def test_values_without_a_repr_are_refused_as_validation_errors(engines: Engines) -> None:
    """A 5,001-digit int has no str() or repr(): it used to escape as a raw ValueError."""
    huge = 10**5000
    calls = [lambda db: db.create_prompt(str(uuid.uuid4()), "c", tokens_input=huge),
             lambda db: db.create_prompt(str(uuid.uuid4()), "c", cost_usd=huge),
             lambda db: db.create_system_log("m", details={"n": huge}),
             lambda db: db.create_system_log("m", created_at=huge),
             lambda db: db.list_agents(session_id=huge),
             lambda db: db.list_agents(since=huge),
             lambda db: db.list_agent_logs(log_level=huge),
             lambda db: db.get_agent(huge)]
    for call in calls:
        outcome = await on_both(engines, lambda name, db, c=call: c(db), "a 5,001-digit int")
        assert isinstance(outcome, Err) and isinstance(outcome.error, ValidationError)


@pytest.mark.parametrize("depth", [101, 500, 990, 5000])
async def test_json_deeper_than_100_levels_is_refused(engines: Engines, depth: int) -> None:
    """Deeper JSON used to be stored (and a 500 on the REST API) or a raw RecursionError."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    outcome = await on_both(engines, lambda name, db: db.create_system_log("m", details=value),
                            f"details nested {depth} deep")
    assert isinstance(outcome, Err) and isinstance(outcome.error, ValidationError)
    assert "nested deeper than 100 levels" in outcome.error.message


async def test_json_with_a_cycle_is_refused_naming_the_cycle(engines: Engines) -> None:
    """The encoder built once has no circular check of its own: a cycle must still be named."""
    value: list[Any] = [1, {"a": None}]
    value[1]["a"] = value
    outcome = await on_both(engines, lambda name, db: db.create_system_log("m", details=value),
                            "details holding itself")
    assert isinstance(outcome, Err) and isinstance(outcome.error, ValidationError)
    assert "Circular reference detected" in outcome.error.message
    assert outcome.error.field == "details"


async def test_negative_zero_in_json_reads_back_as_zero_on_both(engines: Engines) -> None:
    """PostgreSQL's numeric has no -0: -0.0 in JSON used to read back as -0.0 on SQLite only."""
    details = {"a": -0.0, "b": [-0.0, -0.01], "-0.0": "-0.0"}
    outcome = await on_both(engines, lambda name, db: db.create_system_log("m", details=details),
                            "details with -0.0")
    assert isinstance(outcome, Ok)
    rows = await read_back(engines, "get_system_log", outcome.values, "-0.0")
    for row in rows.values():
        assert canon(row["details"]) == canon({"a": 0.0, "b": [0.0, -0.01], "-0.0": "-0.0"})


@pytest.mark.parametrize("cost", [True, "5", b"5"])
async def test_cost_must_be_a_number(engines: Engines, cost: Any) -> None:
    """Like token counts: True used to be stored as 1.0 and "5" as 5.0."""
    outcome = await on_both(engines, lambda name, db: db.create_prompt(
        str(uuid.uuid4()), "c", cost_usd=cost), f"cost_usd={cost!r}")
    assert isinstance(outcome, Err) and isinstance(outcome.error, ValidationError)
    assert outcome.error.field == "cost_usd"


async def test_jsonb_sorts_object_keys(engines: Engines) -> None:
    """The finding behind the key-order-insensitive comparison: SQLite keeps the order written,
    PostgreSQL's jsonb returns keys shorter first, then by bytes (values are equal)."""
    details = {"bbb": 1, "a": 2, "cc": 3}
    outcome = await on_both(engines, lambda name, db: db.create_system_log("m", details=details),
                            "key order")
    assert isinstance(outcome, Ok)
    rows = await read_back(engines, "get_system_log", outcome.values, "key order")
    assert list(rows["sqlite"]["details"]) == ["bbb", "a", "cc"]
    assert list(rows["postgresql"]["details"]) == ["a", "cc", "bbb"]
