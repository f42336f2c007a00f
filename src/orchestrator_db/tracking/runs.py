"""Agent runs: ``db.track_agent(...)`` and the one-line log helpers (design §5).

``AgentRun`` wraps one agent run (status, start/end, failures, logs and prompts);
``SyncAgentRun`` is its blocking twin, handed a runner that executes its coroutines (the sync
manager's loop), so this module never needs to know the sync facade.
"""

from __future__ import annotations

import asyncio
import contextvars
import traceback
import uuid
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Protocol, TypeVar

from ..errors import DuplicateError, OrchestratorDBError
from ..manager import CoreManager
from ..models import MAX_MESSAGE_CHARS, MAX_SHORT_CHARS, clean_text, utc_now

# An exception's message and traceback in a log's details: enough to debug, well under the
# 1 MB a JSON field may hold.
MAX_DETAIL_CHARS = 100_000

T = TypeVar("T")

# The agent whose run the current code is part of: set by track_agent, read by the handler.
current_agent_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "orchestrator_db_agent_id", default=None
)
# The innermost run the current code is inside: a run started within it is its sub-agent.
current_run: contextvars.ContextVar[AgentRun | None] = contextvars.ContextVar(
    "orchestrator_db_run", default=None
)


class _RunContext:
    """The context variables a run sets for the code inside its block, put back when it ends."""

    def __init__(self) -> None:
        self._tokens: tuple[contextvars.Token[str | None],
                            contextvars.Token[AgentRun | None]] | None = None

    def enter(self, agent_id: str | None, run: AgentRun) -> None:
        self._tokens = (current_agent_id.set(agent_id), current_run.set(run))

    def leave(self) -> None:
        if self._tokens is not None:
            agent_token, run_token = self._tokens
            self._tokens = None
            current_agent_id.reset(agent_token)
            current_run.reset(run_token)


class Runner(Protocol):
    """Run a coroutine to completion and return its result (``SyncDatabaseManager``'s loop)."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> T: ...


def exception_details(exc: BaseException) -> dict[str, Any]:
    """Describe an exception for a log record's details: type, message and traceback."""
    # Cleaned and cut like any text from outside: an exception may carry NUL, lone surrogates
    # or megabytes, and the record of it must still be storable.
    return {
        "type": clean_text(f"{type(exc).__module__}.{type(exc).__qualname__}", MAX_SHORT_CHARS),
        "message": clean_text(_text_of(exc), MAX_DETAIL_CHARS),
        "traceback": clean_text("".join(traceback.format_exception(exc)), MAX_DETAIL_CHARS),
    }


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as inner:  # noqa: BLE001 - a broken __str__ must not hide the failure
        return f"<str() failed: {type(inner).__name__}>"


# track_agent -------------------------------------------------------------------------------------
class PromptHandle:
    """A prompt recorded by ``run.prompt(...)``; ``complete`` stores its response and cost."""

    def __init__(self, db: CoreManager, prompt_id: str) -> None:
        self._db = db
        self.prompt_id = prompt_id

    @property
    def id(self) -> str:
        """The prompt's id."""
        return self.prompt_id

    async def complete(self, response: str | None, *, tokens_input: int = 0,
                       tokens_output: int = 0, cost_usd: float | None = None) -> bool:
        """Store the response, tokens and cost and mark the prompt completed.

        Without ``cost_usd`` the cost is computed from the prompt's model and tokens.
        """
        return await self._db.complete_prompt(self.prompt_id, response,
                                              tokens_input=tokens_input,
                                              tokens_output=tokens_output, cost_usd=cost_usd)

    async def fail(self, response: str | None = None, *, tokens_input: int = 0,
                   tokens_output: int = 0, cost_usd: float | None = None) -> bool:
        """Mark the prompt failed (tokens and cost spent on it still count)."""
        return await self._db.complete_prompt(self.prompt_id, response,
                                              tokens_input=tokens_input,
                                              tokens_output=tokens_output, cost_usd=cost_usd,
                                              status="failed")


class AgentRun:
    """One tracked agent run: ``async with db.track_agent(...) as run:``.

    Entering creates (or reuses by name) the orchestrator agent and creates the agent as
    ``executing`` with ``started_at``; leaving marks it ``completed``, or ``failed`` with the
    exception logged as an ERROR agent log (``cancelled`` for cancellation and interrupts), and
    re-raises. Cancelled while entering, after its agent was created, it is marked
    ``cancelled`` too (and the cancel goes on); cancelled while leaving, it is still ended
    (``completed`` if its block had completed). While inside, ``current_agent_id`` names the
    agent, so ``OrchestratorDBHandler`` files stdlib log records of this code under it.
    """

    def __init__(self, db: CoreManager, orchestrator_agent: str, session_id: str | None,
                 *, model: str | None = None, name: str | None = None,
                 description: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._db = db
        self.orchestrator_agent = orchestrator_agent
        self.session_id = session_id if session_id is not None else str(uuid.uuid4())
        self.model = model
        self.name = name
        self.description = description
        self.metadata = metadata
        self.orchestrator_agent_id: str | None = None
        #: The run this one was started inside (same manager), if any: its parent agent.
        self.parent_agent_id: str | None = None
        self._agent_id: str | None = None
        self._context = _RunContext()

    @property
    def agent_id(self) -> str:
        """The id of the agent this run created."""
        if self._agent_id is None:
            raise OrchestratorDBError("the run has not started; use it as a context manager")
        return self._agent_id

    async def _orchestrator_agent_id(self) -> str:
        db = self._db
        found = await db.get_orchestrator_agent_by_name(self.orchestrator_agent)
        if found is not None:
            return str(found["id"])
        try:
            return await db.create_orchestrator_agent(self.orchestrator_agent, self.description,
                                                      default_model=self.model)
        except DuplicateError:  # another process or task created it just now
            found = await db.get_orchestrator_agent_by_name(self.orchestrator_agent)
            if found is None:  # pragma: no cover - created and deleted in between
                raise
            return str(found["id"])

    async def _start(self, parent: AgentRun | None = None) -> str:
        if parent is not None and parent._db is self._db and parent._agent_id is not None:
            self.parent_agent_id = parent._agent_id
        self.orchestrator_agent_id = await self._orchestrator_agent_id()
        # A cancel landing inside the insert may come after the server committed the row (on
        # PostgreSQL): the row would stay `executing` with no __aexit__ to end it. So the insert
        # runs to its end whatever happens, and a cancel is then honoured: the run is recorded
        # `cancelled` (as a cancel in the block would be) and the cancel goes on.
        create = asyncio.ensure_future(self._db.create_agent(
            self.orchestrator_agent_id, self.session_id, status="executing", name=self.name,
            model=self.model, metadata=self.metadata, started_at=utc_now(),
            parent_agent_id=self.parent_agent_id,
        ))
        try:
            self._agent_id = await asyncio.shield(create)
        except asyncio.CancelledError as cancel:
            try:
                self._agent_id = await _through_cancels(create)
            except Exception:  # noqa: BLE001 - no row was created: nothing to end
                raise cancel from None
            await _through_cancels(asyncio.ensure_future(self._finish(cancel)))
            raise
        return self._agent_id

    async def _finish(self, exc: BaseException | None) -> None:
        db = self._db
        agent_id = self.agent_id
        if exc is None:
            await db.update_agent_status(agent_id, "completed")
            return
        failed = isinstance(exc, Exception)
        status = "failed" if failed else "cancelled"
        try:
            async with db.transaction():
                await db.create_agent_log(
                    agent_id, clean_text(f"{type(exc).__name__}: {_text_of(exc)}",
                                         MAX_MESSAGE_CHARS),
                    log_level="ERROR" if failed else "WARNING",
                    log_type="error" if failed else "cancelled",
                    details={"exception": exception_details(exc)},
                )
                await db.update_agent_status(agent_id, status)
        except Exception as record_exc:  # keep the caller's exception, say why it is unrecorded
            exc.add_note(f"orchestrator-db could not record this failure: {record_exc!r}")
            try:  # the run must not stay `executing`: its status at least
                await db.update_agent_status(agent_id, status)
            except Exception as status_exc:  # noqa: BLE001 - noted on the caller's exception
                exc.add_note(f"orchestrator-db could not mark the run {status}: {status_exc!r}")

    async def __aenter__(self) -> AgentRun:
        await self._start(current_run.get())
        self._context.enter(self._agent_id, self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._context.leave()
        # Ended whatever happens (a second cancel must not leave it `executing`); a cancel
        # arriving meanwhile is raised once it is recorded.
        await _through_cancels(asyncio.ensure_future(self._finish(exc)), reraise=True)

    async def log(self, message: str, level: str = "INFO", *, log_type: str = "event",
                  details: Any = None) -> str:
        """Write an agent log line for this run and return its id."""
        return await self._db.create_agent_log(self.agent_id, message, log_level=level,
                                               log_type=log_type, details=details)

    async def prompt(self, content: str, *, model: str | None = None) -> PromptHandle:
        """Record a prompt sent by this run (model defaults to the run's)."""
        prompt_id = await self._db.create_prompt(self.agent_id, content,
                                                 model=model if model is not None else self.model)
        return PromptHandle(self._db, prompt_id)


class SyncPromptHandle:
    """The blocking form of :class:`PromptHandle`."""

    def __init__(self, run: Runner, handle: PromptHandle) -> None:
        self._run = run
        self._handle = handle
        self.prompt_id = handle.prompt_id

    @property
    def id(self) -> str:
        """The prompt's id."""
        return self.prompt_id

    def complete(self, response: str | None, **kwargs: Any) -> bool:
        """Store the response, tokens and cost and mark the prompt completed."""
        return self._run(self._handle.complete(response, **kwargs))

    def fail(self, response: str | None = None, **kwargs: Any) -> bool:
        """Mark the prompt failed."""
        return self._run(self._handle.fail(response, **kwargs))


class SyncAgentRun:
    """The blocking form of :class:`AgentRun`: ``with sync_db.track_agent(...) as run:``.

    The database work is the async run's, executed by ``run`` (the sync manager's loop); the
    context variable is set in the caller's own thread, where its log records are emitted.

    Args:
        run: runs a coroutine to completion and returns its result.
        agent_run: the async run whose work this one does.
    """

    def __init__(self, run: Runner, agent_run: AgentRun) -> None:
        self._run = run
        self._async_run = agent_run
        self._context = _RunContext()

    @property
    def agent_id(self) -> str:
        """The id of the agent this run created."""
        return self._async_run.agent_id

    @property
    def session_id(self) -> str:
        """The session of this run."""
        return self._async_run.session_id

    @property
    def orchestrator_agent_id(self) -> str | None:
        """The orchestrator agent of this run."""
        return self._async_run.orchestrator_agent_id

    def __enter__(self) -> SyncAgentRun:
        # Read in the caller's thread, where an enclosing `with` block set it.
        agent_id = self._run(self._async_run._start(current_run.get()))
        self._context.enter(agent_id, self._async_run)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._context.leave()
        self._run(self._async_run._finish(exc))

    def log(self, message: str, level: str = "INFO", **kwargs: Any) -> str:
        """Write an agent log line for this run and return its id."""
        return self._run(self._async_run.log(message, level, **kwargs))

    def prompt(self, content: str, *, model: str | None = None) -> SyncPromptHandle:
        """Record a prompt sent by this run."""
        return SyncPromptHandle(self._run, self._run(self._async_run.prompt(content, model=model)))


async def _through_cancels(task: asyncio.Future[T], *, reraise: bool = False) -> T:
    """Wait for ``task`` to end, cancels of the caller notwithstanding; return its result.

    With ``reraise``, a cancel received meanwhile is raised once the task has ended.
    """
    received: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.cancelled():  # the task itself was cancelled (the loop is shutting down)
                raise
            received = exc
    result = task.result()
    if reraise and received is not None:
        raise received
    return result


# one-line helpers --------------------------------------------------------------------------------
async def log_agent_event(db: CoreManager, agent_id: str, log_type: str, message: str,
                          metadata: Any = None, *, level: str = "INFO") -> str:
    """Write one agent log line (the seeds' signature; ``metadata`` is stored as details)."""
    return await db.create_agent_log(agent_id, message, log_level=level, log_type=log_type,
                                     details=metadata)


async def log_system_event(db: CoreManager, message: str, *, level: str = "INFO",
                           source: str | None = None, details: Any = None) -> str:
    """Write one system log line and return its id."""
    return await db.create_system_log(message, log_level=level, source=source, details=details)
