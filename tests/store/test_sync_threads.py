"""SyncDatabaseManager shared by threads: connect() and close() racing with calls never hang."""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator_db import NotConnectedError, SyncDatabaseManager

LOOP_THREAD = "orchestrator-db-sync"
JOIN_TIMEOUT = 30  # seconds; a thread still alive after this is stuck for good


def loop_threads() -> int:
    return sum(t.name == LOOP_THREAD for t in threading.enumerate())


def start(target: Callable[[], None]) -> threading.Thread:
    # Daemon threads: before the fix some never return, and must not keep pytest from exiting.
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def joined(threads: list[threading.Thread]) -> list[threading.Thread]:
    """Join every thread; return those still running (stuck) after the timeout."""
    for t in threads:
        t.join(JOIN_TIMEOUT)
    return [t for t in threads if t.is_alive()]


def close_while_calling(db_url: str) -> None:
    """Three threads call the manager while a fourth closes it."""
    db = SyncDatabaseManager(url=db_url).connect()
    db.create_system_log("x")
    stop = threading.Event()
    calling = threading.Semaphore(0)
    errors: list[BaseException] = []

    def worker() -> None:
        calling.release()
        while not stop.is_set():
            try:
                db.list_system_logs(limit=1)
            except BaseException as exc:  # noqa: BLE001 - asserted on below
                errors.append(exc)

    threads = [start(worker) for _ in range(3)]
    for _ in threads:  # every worker is calling
        assert calling.acquire(timeout=JOIN_TIMEOUT)
    closer = start(db.close)
    assert joined([closer]) == [], "close() hung"
    stop.set()
    assert joined(threads) == [], "a call made while close() ran never returned"
    assert errors, "no call met the closed manager"
    # Typed errors only (PostgreSQL: a call already inside the store as its pool closes gets
    # asyncpg's "pool is closing", a NotConnectedError too).
    assert all(isinstance(e, NotConnectedError) for e in errors), errors


def connect_from_threads(db_url: str, before: int) -> None:
    """Eight threads connect one manager at once and use it; then it is closed."""
    db = SyncDatabaseManager(url=db_url)
    ready = threading.Barrier(8)
    errors: list[BaseException] = []
    counts: list[int] = []

    def connect_and_call() -> None:
        ready.wait()
        try:
            db.connect()
            counts.append(len(db.list_agents(limit=1)))
        except BaseException as exc:  # noqa: BLE001 - asserted on below
            errors.append(exc)

    threads = [start(connect_and_call) for _ in range(8)]
    assert joined(threads) == []
    assert errors == []
    assert counts == [0] * 8
    assert loop_threads() == before + 1
    closer = start(db.close)
    assert joined([closer]) == [], "close() hung"
    assert loop_threads() == before


def test_calls_made_while_another_thread_closes_return_or_raise(db_url: str) -> None:
    for _ in range(10):
        close_while_calling(db_url)


def test_concurrent_connect_opens_one_loop(db_url: str) -> None:
    before = loop_threads()
    for _ in range(5):
        connect_from_threads(db_url, before)


def test_connect_again_and_close_again(db_url: str) -> None:
    before = loop_threads()
    db = SyncDatabaseManager(url=db_url)
    assert db.connect() is db
    assert db.connect() is db  # a no-op on a connected manager
    assert loop_threads() == before + 1
    db.create_system_log("first")
    db.close()
    db.close()  # a no-op on a closed manager
    assert loop_threads() == before
    with db:
        assert [r["message"] for r in db.list_system_logs()] == ["first"]
    assert loop_threads() == before
