"""SyncDatabaseManager: the same core behaviour without await, from plain scripts."""

from __future__ import annotations

import threading

import pytest

from orchestrator_db import (
    DuplicateError,
    ForeignKeyError,
    NotConnectedError,
    SyncDatabaseManager,
    ValidationError,
)

MISSING = "0190f1c2-0000-7000-8000-000000000000"


def test_seed_smoke_sync(db_url: str) -> None:
    with SyncDatabaseManager(url=db_url) as db:
        oa = db.create_orchestrator_agent("test-agent", "Test description")
        row = db.get_orchestrator_agent(oa)
        assert row is not None and row["name"] == "test-agent"
        assert len(db.list_orchestrator_agents()) == 1
        agent = db.create_agent(oa, "s")
        assert db.update_agent_status(agent, "executing") is True
        prompt = db.create_prompt(agent, "q")
        assert db.complete_prompt(prompt, "a", tokens_input=3, tokens_output=4, cost_usd=0.5)
        db.create_agent_logs([{"agent_id": agent, "message": str(i)} for i in range(1500)])
        assert [r["message"] for r in db.iter_agent_logs(agent)] == [str(i) for i in range(1500)]
        summary = db.session_summary("s")
        assert summary is not None and summary["cost_usd"] == 0.5
        page = db.page_agent_logs(agent, limit=10)
        assert len(page.items) == 10 and page.next_cursor


def test_errors_are_the_same_typed_errors(db_url: str) -> None:
    with SyncDatabaseManager(url=db_url) as db:
        db.create_orchestrator_agent("a")
        with pytest.raises(DuplicateError):
            db.create_orchestrator_agent("a")
        with pytest.raises(ForeignKeyError):
            db.create_agent(MISSING, "s")
        with pytest.raises(ValidationError):
            db.get_agent("nope")
        assert db.update_agent(MISSING, name="x") is False


def test_transaction_commit_and_rollback(db_url: str) -> None:
    with SyncDatabaseManager(url=db_url) as db:
        with db.transaction():
            db.create_system_log("kept")
        with pytest.raises(RuntimeError), db.transaction():
            db.create_system_log("lost")
            raise RuntimeError
        with db.transaction():
            db.create_system_log("outer")
            with pytest.raises(KeyError), db.transaction():
                db.create_system_log("inner lost")
                raise KeyError
        assert [r["message"] for r in db.list_system_logs()] == ["kept", "outer"]


def test_threads_share_one_manager(db_url: str) -> None:
    with SyncDatabaseManager(url=db_url) as db:
        def work(n: int) -> None:
            for i in range(50):
                db.create_system_log(f"{n}-{i}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert db.stats()["counts"]["system_logs"] == 200


def test_not_connected(db_url: str) -> None:
    db = SyncDatabaseManager(url=db_url)
    with pytest.raises(NotConnectedError):
        db.list_agents()
    with db:
        db.create_system_log("x")
    with pytest.raises(NotConnectedError):
        db.create_system_log("y")
