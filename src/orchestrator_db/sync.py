"""SyncDatabaseManager: the async manager's methods without ``await``, for plain scripts.

It shares the async implementation instead of copying it: the manager lives on a private event
loop in a background thread, and each call is run there and waited for. Errors are the same typed
errors (nothing is swallowed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
    """Blocking twin of :class:`DatabaseManager` (``with SyncDatabaseManager() as db:``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._manager = DatabaseManager(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # One context per calling thread, so a transaction opened by a thread is seen by the
        # calls that thread makes inside it (each call runs as its own task on the loop).
        self._local = threading.local()

    @property
    def manager(self) -> DatabaseManager:
        """The async manager behind this facade."""
        return self._manager

    def _start_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="orchestrator-db-sync", daemon=True)
        self._thread.start()
        ready.wait()
        return loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise NotConnectedError(
                "the SyncDatabaseManager is not connected; call db.connect() first or use "
                "`with SyncDatabaseManager() as db:`"
            )
        context = getattr(self._local, "context", None)
        if context is None:
            context = self._local.context = contextvars.Context()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(coro, context=context)

            def done(t: asyncio.Task[T]) -> None:
                if t.cancelled():
                    result.cancel()
                elif (exc := t.exception()) is not None:
                    result.set_exception(exc)
                else:
                    result.set_result(t.result())

            task.add_done_callback(done)

        loop.call_soon_threadsafe(start)
        return result.result()

    def connect(self) -> SyncDatabaseManager:
        """Open the database (creating it and applying migrations if needed)."""
        if self._loop is None:
            self._loop = self._start_loop()
            try:
                self._run(self._manager.connect())
            except BaseException:
                self._stop_loop()
                raise
        return self

    def close(self) -> None:
        """Close the database and stop the background loop."""
        if self._loop is None:
            return
        try:
            self._run(self._manager.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()
        loop.close()

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
            if self._loop is not None:
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
