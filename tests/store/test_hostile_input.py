"""Hostile input on both engines: NUL, lone surrogates, out-of-range times and numbers.

Every such value is refused with ``ValidationError`` naming the field (never a driver error,
OverflowError, or a different answer per engine), nothing is written, and values at the limits
give exact sums. ``track_agent`` records an exception whatever its text.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from orchestrator_db import DatabaseManager, ValidationError
from orchestrator_db.models import MAX_MESSAGE_CHARS
from orchestrator_db.summaries import GROUPS

LONE_SURROGATE = "a\udc80b"
NUL = "a\x00b"
BAD_TEXTS = pytest.mark.parametrize("bad", [LONE_SURROGATE, NUL], ids=["surrogate", "nul"])
# UTC forms in the year 10000 and the year 0: no engine (nor Python) can hold them.
TOO_LATE = "9999-12-31T23:59:59-01:00"
TOO_EARLY = "0001-01-01T00:00:00+01:00"
OUT_OF_RANGE = [
    TOO_LATE,
    TOO_EARLY,
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),
    datetime(1, 1, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=1))),
]
OUT_OF_RANGE_TIMES = pytest.mark.parametrize(
    "when", OUT_OF_RANGE, ids=["late-text", "early-text", "late-datetime", "early-datetime"])
MAX_TOKENS = 10**12
MAX_COST = 1e9

Call = Callable[[DatabaseManager, dict[str, str]], Awaitable[Any]]


async def parents(db: DatabaseManager) -> dict[str, str]:
    oa = await db.create_orchestrator_agent("planner")
    agent = await db.create_agent(oa, "s-1")
    log = await db.create_agent_log(agent, "fine")
    syslog = await db.create_system_log("fine")
    prompt = await db.create_prompt(agent, "fine")
    return {"oa": oa, "agent": agent, "log": log, "syslog": syslog, "prompt": prompt}


async def snapshot(db: DatabaseManager) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, to show that a refused call wrote nothing."""
    return {
        "orchestrator_agents": await db.list_orchestrator_agents(limit=1000),
        "agents": await db.list_agents(limit=1000),
        "prompts": await db.list_prompts(limit=1000),
        "agent_logs": await db.list_agent_logs(limit=1000),
        "system_logs": await db.list_system_logs(limit=1000),
    }


async def refused(db: DatabaseManager, call: Awaitable[Any], field: str) -> ValidationError:
    """Await ``call``; assert it is a ValidationError naming ``field`` (not a driver error)."""
    with pytest.raises(ValidationError) as info:
        await call
    assert info.value.field == field, info.value.message
    assert field in info.value.message
    return info.value


async def refused_writing_nothing(db: DatabaseManager, call: Call, field: str
                                  ) -> ValidationError:
    """Make the parent rows, then check that ``call`` is refused naming ``field``, writing
    nothing; return the error."""
    p = await parents(db)
    before = await snapshot(db)
    error = await refused(db, call(db, p), field)
    assert await snapshot(db) == before
    return error


# text: NUL and lone surrogates ------------------------------------------------------------------
def _writes(bad: str) -> dict[str, tuple[Call, str]]:
    return {
        "system message": (lambda db, p: db.create_system_log(bad), "message"),
        "agent message": (lambda db, p: db.create_agent_log(p["agent"], bad), "message"),
        "agent messages in bulk": (lambda db, p: db.create_agent_logs(
            [{"agent_id": p["agent"], "message": "ok"},
             {"agent_id": p["agent"], "message": bad}]), "message"),
        "prompt content": (lambda db, p: db.create_prompt(p["agent"], bad), "content"),
        "prompt response": (lambda db, p: db.complete_prompt(p["prompt"], bad), "response"),
        "orchestrator name": (lambda db, p: db.create_orchestrator_agent(bad), "name"),
        "orchestrator rename": (lambda db, p: db.update_orchestrator_agent(p["oa"], name=bad),
                                "name"),
        "agent name": (lambda db, p: db.create_agent(p["oa"], "s-2", name=bad), "name"),
        "session id": (lambda db, p: db.create_agent(p["oa"], bad), "session_id"),
        "session id update": (lambda db, p: db.update_agent(p["agent"], session_id=bad),
                              "session_id"),
        "log message update": (lambda db, p: db.update_agent_log(p["log"], message=bad),
                               "message"),
        "details value": (lambda db, p: db.create_system_log("m", details={"k": [1, bad]}),
                          "details"),
        "details key": (lambda db, p: db.create_agent_log(p["agent"], "m",
                                                          details={"n": {bad: 1}}), "details"),
        "details update": (lambda db, p: db.update_system_log(p["syslog"], details={bad: 1}),
                           "details"),
        "metadata value": (lambda db, p: db.create_agent(p["oa"], "s-2", metadata={"k": bad}),
                           "metadata"),
        "metadata key": (lambda db, p: db.create_orchestrator_agent("x", metadata={bad: 1}),
                         "metadata"),
    }


WRITE_NAMES = list(_writes("x"))


@BAD_TEXTS
@pytest.mark.parametrize("what", WRITE_NAMES)
async def test_bad_text_is_refused_naming_the_field_and_nothing_is_written(
        db: DatabaseManager, bad: str, what: str) -> None:
    await refused_writing_nothing(db, *_writes(bad)[what])


def _filters(bad: str) -> dict[str, tuple[Call, str]]:
    return {
        "agents by session": (lambda db, p: db.list_agents(session_id=bad), "session_id"),
        "agent logs by session": (lambda db, p: db.list_agent_logs(session_id=bad),
                                  "session_id"),
        "agent logs by type": (lambda db, p: db.list_agent_logs(log_type=bad), "log_type"),
        "system logs by source": (lambda db, p: db.list_system_logs(source=bad), "source"),
        "prompts by model": (lambda db, p: db.list_prompts(model=bad), "model"),
        "prompts by session": (lambda db, p: db.list_prompts(session_id=bad), "session_id"),
        "orchestrator by name": (lambda db, p: db.get_orchestrator_agent_by_name(bad), "name"),
        "session summary": (lambda db, p: db.session_summary(bad), "session_id"),
    }


FILTER_NAMES = list(_filters("x"))


@BAD_TEXTS
@pytest.mark.parametrize("what", FILTER_NAMES)
async def test_bad_text_in_a_filter_is_the_same_error_on_both_engines(
        db: DatabaseManager, bad: str, what: str) -> None:
    p = await parents(db)
    call, field = _filters(bad)[what]
    await refused(db, call(db, p), field)
    # The same filter with clean text answers normally (nothing matches it).
    clean, _ = _filters("a-b")[what]
    assert await clean(db, p) in ([], None)


async def test_text_around_the_bad_characters_is_kept_exactly(db: DatabaseManager) -> None:
    # Characters that are legal, however unusual, are stored and read back unchanged.
    text = "tab\there \u2028 \U0001f600 \ufffd \\x00 \\udc80 \u00e9\u0301"
    p = await parents(db)
    log = await db.create_agent_log(p["agent"], text, details={text: [text]})
    row = await db.get_agent_log(log)
    assert row is not None
    assert row["message"] == text and row["details"] == {text: [text]}


# timestamps outside years 1..9999 in UTC ---------------------------------------------------------
def _timed(when: Any) -> dict[str, tuple[Call, str]]:
    return {
        "agent log created_at": (lambda db, p: db.create_agent_log(p["agent"], "m",
                                                                   created_at=when),
                                 "created_at"),
        "system log created_at": (lambda db, p: db.create_system_log("m", created_at=when),
                                  "created_at"),
        "agent started_at": (lambda db, p: db.create_agent(p["oa"], "s-2", started_at=when),
                             "started_at"),
        "agent completed_at": (lambda db, p: db.create_agent(p["oa"], "s-2",
                                                             completed_at=when),
                               "completed_at"),
        "update_agent started_at": (lambda db, p: db.update_agent(p["agent"], started_at=when),
                                    "started_at"),
        "update_agent_status completed_at": (
            lambda db, p: db.update_agent_status(p["agent"], "completed", completed_at=when),
            "completed_at"),
        "update_prompt completed_at": (
            lambda db, p: db.update_prompt(p["prompt"], completed_at=when), "completed_at"),
        "list_agents since": (lambda db, p: db.list_agents(since=when), "since"),
        "list_agent_logs until": (lambda db, p: db.list_agent_logs(until=when), "until"),
        "list_system_logs since": (lambda db, p: db.list_system_logs(since=when), "since"),
        "list_prompts until": (lambda db, p: db.list_prompts(until=when), "until"),
        "cost_summary since": (lambda db, p: db.cost_summary("day", since=when), "since"),
        "cost_summary until": (lambda db, p: db.cost_summary(until=when), "until"),
    }


TIMED_NAMES = list(_timed(TOO_LATE))


@OUT_OF_RANGE_TIMES
@pytest.mark.parametrize("what", TIMED_NAMES)
async def test_time_outside_years_1_to_9999_is_a_validation_error(
        db: DatabaseManager, when: Any, what: str) -> None:
    await refused_writing_nothing(db, *_timed(when)[what])


@pytest.mark.parametrize("group_by", ["day", "model", "session"])
async def test_cost_ranges_on_the_last_day_there_is(db: DatabaseManager, group_by: str) -> None:
    # A range inside 9999-12-31 has no midnight after its start: it is read from the prompts
    # alone, and the rollups after or before it count as for any other day.
    p = await parents(db)
    await db.complete_prompt(p["prompt"], "done", tokens_input=3, tokens_output=2,
                             cost_usd=0.5)
    assert (await db.prune("0s", tables=("prompts",)))["prompts"] == 1  # into the rollups
    live = await db.create_prompt(p["agent"], "live")
    await db.complete_prompt(live, "done", cost_usd=0.25)
    since_late = "9999-12-31T00:00:01Z"
    until_late = "9999-12-31T12:00:00+14:00"  # 9999-12-30T22:00Z: still before the last day
    summaries = {
        "since": await db.cost_summary(group_by, since=since_late),
        "until": await db.cost_summary(group_by, until="9999-12-31T23:59:59.999999Z"),
        "until+14": await db.cost_summary(group_by, until=until_late),
        "page since": (await db.page_costs(group_by, since=since_late)).items,
    }
    everything = await db.cost_summary(group_by)
    assert summaries == {"since": [], "until": everything, "until+14": everything,
                         "page since": []}
    assert sum(row["cost_usd"] for row in everything) == 0.75


def craft_cursor(created_at: str, row_id: str, order: str = "asc") -> str:
    raw = json.dumps([created_at, row_id, order], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("when", [TOO_LATE, TOO_EARLY], ids=["late", "early"])
@pytest.mark.parametrize("lister", ["list_agents", "list_prompts", "list_agent_logs",
                                    "list_system_logs", "list_orchestrator_agents"])
async def test_time_outside_the_range_inside_a_cursor_is_a_validation_error(
        db: DatabaseManager, when: str, lister: str) -> None:
    p = await parents(db)
    cursor = craft_cursor(when, p["log"])
    # order given: list_orchestrator_agents is newest first by default, the others oldest first
    await refused(db, getattr(db, lister)(cursor=cursor, order="asc"), "cursor")
    # A crafted cursor at a legal time is accepted: the refusal is about the time.
    legal = craft_cursor("2000-01-01T00:00:00+00:00", p["log"])
    assert len(await getattr(db, lister)(cursor=legal, order="asc")) == 1


async def test_times_at_the_edges_of_the_range_are_kept(db: DatabaseManager) -> None:
    p = await parents(db)
    late = await db.create_system_log("late", created_at="9999-12-31T23:59:59.999998+00:00")
    early = await db.create_system_log("early", created_at="0001-01-01T00:00:00.000001-00:00")
    late_row, early_row = await db.get_system_log(late), await db.get_system_log(early)
    assert late_row is not None and early_row is not None
    assert late_row["created_at"] == "9999-12-31T23:59:59.999998+00:00"
    assert early_row["created_at"] == "0001-01-01T00:00:00.000001+00:00"
    rows = await db.list_system_logs(since="9999-12-31T00:00:00Z")
    assert [r["id"] for r in rows] == [late]
    rows = await db.list_system_logs(until="0001-01-02T00:00:00Z")
    assert [r["id"] for r in rows] == [early]
    assert p["syslog"] not in {r["id"] for r in rows}


FIRST_AND_LAST = [datetime.min, "0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00",
                  datetime.max.replace(tzinfo=UTC), "9999-12-31T23:59:59.999999Z"]


@pytest.mark.parametrize("when", FIRST_AND_LAST, ids=["min", "first", "first+1h", "max", "last"])
@pytest.mark.parametrize("what", [n for n in TIMED_NAMES if " since" not in n
                                  and " until" not in n])
async def test_the_first_and_last_instants_are_not_written(
        db: DatabaseManager, when: Any, what: str) -> None:
    # PostgreSQL stores them as -infinity and infinity, which have no day (prune's rollups,
    # costs by day): refused on both engines, saying which instant it is.
    error = await refused_writing_nothing(db, *_timed(when)[what])
    assert " instant a time can hold" in error.message


@pytest.mark.parametrize("when", FIRST_AND_LAST[:2] + FIRST_AND_LAST[3:])
async def test_filters_may_name_the_first_and_last_instants(db: DatabaseManager,
                                                            when: Any) -> None:
    p = await parents(db)
    everything = {p["log"]} if when in (datetime.min, "0001-01-01T00:00:00Z") else set()
    assert {r["id"] for r in await db.list_agent_logs(since=when)} == everything
    assert {r["id"] for r in await db.list_agent_logs(until=when)} == {p["log"]} - everything


# numbers: token and cost caps --------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("tokens_input", MAX_TOKENS + 1),
    ("tokens_output", MAX_TOKENS + 1),
    ("tokens_input", 2**63),
    ("cost_usd", MAX_COST + 1),
    ("cost_usd", 1e308),
    ("cost_usd", math.nan),
    ("cost_usd", math.inf),
    ("cost_usd", -math.inf),
], ids=["tokens_input-cap+1", "tokens_output-cap+1", "tokens_input-2^63", "cost-cap+1",
        "cost-1e308", "cost-nan", "cost-inf", "cost--inf"])
async def test_tokens_and_cost_above_the_caps_are_refused(
        db: DatabaseManager, field: str, value: Any) -> None:
    p = await parents(db)
    before = await snapshot(db)
    await refused(db, db.create_prompt(p["agent"], "c", **{field: value}), field)
    await refused(db, db.update_prompt(p["prompt"], **{field: value}), field)
    await refused(db, db.complete_prompt(p["prompt"], "r", **{field: value}), field)
    assert await snapshot(db) == before


async def test_two_prompts_at_the_caps_sum_exactly_everywhere(db: DatabaseManager) -> None:
    oa = await db.create_orchestrator_agent("rich")
    agent = await db.create_agent(oa, "s-cap", name="spender", model="big")
    for _ in range(2):
        await db.create_prompt(agent, "c", model="big", tokens_input=MAX_TOKENS,
                               tokens_output=MAX_TOKENS, cost_usd=MAX_COST)
    expected = {"prompts": 2, "tokens_input": 2 * MAX_TOKENS, "tokens_output": 2 * MAX_TOKENS,
                "cost_usd": 2e9}

    async def check_sums() -> None:
        summary = await db.session_summary("s-cap")
        assert summary is not None
        assert {k: summary[k] for k in expected} == expected
        assert type(summary["tokens_input"]) is int
        sessions = await db.list_sessions()
        assert [s["session_id"] for s in sessions] == ["s-cap"]
        assert {k: sessions[0][k] for k in expected} == expected
        for group_by in GROUPS:
            groups = await db.cost_summary(group_by=group_by)
            totals = {k: sum(g[k] for g in groups) for k in expected}
            assert totals == expected, group_by
            assert all(type(g["tokens_output"]) is int for g in groups)
        (by_agent,) = await db.cost_summary(group_by="agent")
        assert (by_agent["key"], by_agent["name"]) == (agent, "spender")
        (by_model,) = await db.cost_summary(group_by="model")
        assert by_model["key"] == "big"

    await check_sums()
    # Pruned prompts are folded into the rollups: the same exact sums afterwards.
    pruned = await db.prune(timedelta(0), tables=["prompts"])
    assert pruned == {"prompts": 2}
    assert await db.list_prompts() == []
    await check_sums()
    # Two more at the caps on top of the rollups still add up exactly.
    for _ in range(2):
        await db.create_prompt(agent, "c", model="big", tokens_input=MAX_TOKENS,
                               tokens_output=MAX_TOKENS, cost_usd=MAX_COST)
    summary = await db.session_summary("s-cap")
    assert summary is not None
    assert (summary["prompts"], summary["tokens_input"], summary["cost_usd"]) == (
        4, 4 * MAX_TOKENS, 4e9)


@pytest.mark.parametrize("how", ["create", "update", "complete"])
async def test_negative_zero_cost_is_stored_as_zero(db: DatabaseManager, how: str) -> None:
    p = await parents(db)
    if how == "create":
        prompt = await db.create_prompt(p["agent"], "c", cost_usd=-0.0)
    elif how == "update":
        prompt = p["prompt"]
        assert await db.update_prompt(prompt, cost_usd=-0.0)
    else:
        prompt = p["prompt"]
        assert await db.complete_prompt(prompt, "r", cost_usd=-0.0)
    row = await db.get_prompt(prompt)
    assert row is not None
    assert row["cost_usd"] == 0.0 and math.copysign(1, row["cost_usd"]) == 1
    (listed,) = [r for r in await db.list_prompts() if r["id"] == prompt]
    assert math.copysign(1, listed["cost_usd"]) == 1
    summary = await db.session_summary("s-1")
    assert summary is not None and math.copysign(1, summary["cost_usd"]) == 1


# track_agent: whatever an exception says, the run ends failed and the failure is logged ---------
class Boom(Exception):
    """An exception with hostile text."""


@pytest.mark.parametrize("text, contains, absent", [
    ("bad\x00byte", "bad\\x00byte", "\x00"),
    ("bad\udc80surrogate", "bad\\udc80surrogate", "\udc80"),
    ("x" * 2_000_000, "xxxx", None),
], ids=["nul", "surrogate", "2M-chars"])
async def test_track_agent_records_a_failure_whatever_its_text(
        db: DatabaseManager, text: str, contains: str, absent: str | None) -> None:
    with pytest.raises(Boom) as info:
        async with db.track_agent("runner", session_id="s-boom") as run:
            raise Boom(text)
    assert not getattr(info.value, "__notes__", None)  # the failure was recorded: no note
    agent = await db.get_agent(run.agent_id)
    assert agent is not None
    assert agent["status"] == "failed" and agent["completed_at"] is not None
    (log,) = await db.list_agent_logs(run.agent_id, log_level="ERROR")
    message = log["message"]
    assert message.startswith("Boom: ")
    assert contains in message
    assert len(message) <= MAX_MESSAGE_CHARS
    if absent is not None:
        assert absent not in message
        assert message == f"Boom: {contains}"
    else:
        assert message.endswith("[truncated]")
        assert len(message) > 100_000  # cut at the limit, not to a stub
    details = log["details"]["exception"]
    assert details["type"].endswith("Boom")
    assert contains in details["message"]
    if absent is not None:
        assert absent not in details["message"] and absent not in details["traceback"]
    summary = await db.session_summary("s-boom")
    assert summary is not None and summary["agents_by_status"]["failed"] == 1


async def test_track_agent_with_a_broken_str_still_ends_failed(db: DatabaseManager) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    with pytest.raises(Unprintable):
        async with db.track_agent("runner", session_id="s-broken") as run:
            raise Unprintable()
    agent = await db.get_agent(run.agent_id)
    assert agent is not None and agent["status"] == "failed"
    (log,) = await db.list_agent_logs(run.agent_id, log_level="ERROR")
    assert log["message"].startswith("Unprintable: ")


def test_crafted_cursor_helper_matches_the_library() -> None:
    from orchestrator_db.pagination import decode_cursor, encode_cursor

    row_id = str(uuid.uuid4())
    row = {"created_at": "2024-05-01T10:00:00.000000+00:00", "id": row_id}
    assert craft_cursor(row["created_at"], row_id) == encode_cursor(row, "asc")
    assert decode_cursor(craft_cursor(row["created_at"], row_id), "asc") == (
        datetime(2024, 5, 1, 10, tzinfo=UTC), row_id)
