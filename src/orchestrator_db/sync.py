"""SyncDatabaseManager: the async manager's methods without ``await``, for plain scripts.

It shares the async implementation instead of copying it: the manager lives on a private event
loop in a background thread, and each call is run there and waited for. Errors are the same typed
errors (nothing is swallowed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .database import DatabaseManager
from .errors import NotConnectedError
from .tracking import SyncAgentRun

T = TypeVar("T")


class SyncDatabaseManager:
    """Blocking twin of :class:`DatabaseManager` (``with SyncDatabaseManager() as db:``).

    One manager may be shared by threads: ``connect()`` and ``close()`` may be called from any of
    them (the first ``connect()`` opens the database, the others wait for it; ``connect()`` on a
    connected manager does nothing). A call made while another thread closes the manager either
    returns or raises :class:`NotConnectedError`; it never waits forever.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._manager = DatabaseManager(*args, **kwargs)
        # Held across the whole of connect() and close(), so that they run one at a time.
        self._lifecycle = threading.Lock()
        # Guards the two below: a call is scheduled on the loop only while it is published, and
        # every call not yet answered is in _pending, so that stopping the loop can answer it.
        self._state = threading.Lock()
        # Published only once the manager is connected, unpublished before the loop stops.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[concurrent.futures.Future[Any], Coroutine[Any, Any, Any]] = {}
        self._thread: threading.Thread | None = None
        # One context per calling thread, so a transaction opened by a thread is seen by the
        # calls that thread makes inside it (each call runs as its own task on the loop).
        self._local = threading.local()

    @property
    def manager(self) -> DatabaseManager:
        """The async manager behind this facade."""
        return self._manager

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._state:
            loop = self._loop
            if loop is None:
                coro.close()
                raise NotConnectedError(
                    "the SyncDatabaseManager is not connected; call db.connect() first or use "
                    "`with SyncDatabaseManager() as db:`"
                )
            result = self._schedule(loop, coro)
        return result.result()

    def _schedule(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
                  ) -> concurrent.futures.Future[T]:
        """Start ``coro`` on ``loop`` (caller holds ``_state``); return the future of its result."""
        context = getattr(self._local, "context", None)
        if context is None:
            context = self._local.context = contextvars.Context()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._pending[result] = coro

        def done(t: asyncio.Task[T]) -> None:
            with self._state:
                self._pending.pop(result, None)
            if t.cancelled():  # only the loop's shutdown cancels these tasks
                result.set_exception(_closed_error())
            elif (exc := t.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set_result(t.result())

        def start() -> None:
            loop.create_task(coro, context=context).add_done_callback(done)

        loop.call_soon_threadsafe(start)
        return result

    def connect(self) -> SyncDatabaseManager:
        """Open the database (creating it and applying migrations if needed)."""
        with self._lifecycle:
            if self._loop is not None:
                return self
            loop, thread = _start_loop()
            try:
                with self._state:
                    connected = self._schedule(loop, self._manager.connect())
                connected.result()
            except BaseException:
                self._stop_loop(loop, thread)
                raise
            with self._state:
                self._loop, self._thread = loop, thread
        return self

    def close(self) -> None:
        """Close the database and stop the background loop.

        Calls other threads are making meanwhile return or raise ``NotConnectedError``.
        """
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                # The loop stays published meanwhile: a thread inside `with db.transaction():`
                # can still end its transaction, which the manager's close may be waiting for.
                self._run(self._manager.close())
            finally:
                with self._state:
                    self._loop = self._thread = None
                self._stop_loop(loop, thread)

    def _stop_loop(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        """Stop ``loop`` (its thread cancels what still runs there) and answer every call."""
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()
        with self._state:
            unanswered, self._pending = self._pending, {}
        for result, coro in unanswered.items():  # never started: the loop stopped first
            coro.close()
            if not result.done():
                result.set_exception(_closed_error())

    def __enter__(self) -> SyncDatabaseManager:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group calls atomically (the blocking form of ``DatabaseManager.transaction``)."""
        cm = self._manager.transaction()
        self._run(cm.__aenter__())
        try:
            yield
        except BaseException as exc:
            if not self._run(cm.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._run(cm.__aexit__(None, None, None))

    def track_agent(self, *args: Any, **kwargs: Any) -> SyncAgentRun:
        """Track one agent run: ``with db.track_agent("planner", session_id=s) as run:``.

        The blocking form of ``DatabaseManager.track_agent`` (same arguments), sharing its code.
        """
        return SyncAgentRun(self._run, self._manager.track_agent(*args, **kwargs))

    def _iterate(self, agen_factory: Callable[..., Any], *args: Any, **kwargs: Any
                 ) -> Iterator[Any]:
        agen = agen_factory(*args, **kwargs)
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            # Once closed, the loop finalised the generator itself.
            with contextlib.suppress(NotConnectedError):
                self._run(agen.aclose())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._manager, name)
        if name.startswith("iter_") and callable(attr):
            return functools.partial(self._iterate, attr)
        if inspect.iscoroutinefunction(attr):
            @functools.wraps(attr)
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._run(attr(*args, **kwargs))
            return call
        return attr


def _start_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Start an event loop in a thread of its own; it closes itself once stopped."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            # Calls still running (another thread's, as close() ran) are cancelled and waited
            # for, so that each one is answered (NotConnectedError) and none is left pending.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="orchestrator-db-sync", daemon=True)
    thread.start()
    ready.wait()
    return loop, thread


def _closed_error() -> NotConnectedError:
    return NotConnectedError(
        "the SyncDatabaseManager was closed while this call ran; connect it again to retry"
    )
