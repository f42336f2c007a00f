"""Pydantic v2 models of the five records and of their create/update payloads.

The record models (``OrchestratorAgent``, ``Agent``, ``Prompt``, ``AgentLog``, ``SystemLog``)
describe exactly what the manager returns: ids as UUID strings, timestamps as fixed-shape UTC
ISO 8601 strings, JSON fields decoded. The payload models validate what callers send.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
)

from .jsoncodec import JsonText, dumps_json

OrchestratorAgentStatus = Literal["active", "inactive", "archived"]
AgentStatus = Literal["pending", "executing", "completed", "failed", "cancelled"]
PromptStatus = Literal["pending", "completed", "failed"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

ORCHESTRATOR_AGENT_STATUSES: tuple[str, ...] = get_args(OrchestratorAgentStatus)
AGENT_STATUSES: tuple[str, ...] = get_args(AgentStatus)
PROMPT_STATUSES: tuple[str, ...] = get_args(PromptStatus)
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
LOG_LEVEL_NUMBERS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

# Size limits: an oversized payload is a ValidationError, not a slow database or a driver error.
MAX_NAME_CHARS = 200
MAX_SHORT_CHARS = 1_000
MAX_MESSAGE_CHARS = 1_000_000
MAX_CONTENT_CHARS = 10_000_000
MAX_JSON_BYTES = 1_000_000
MAX_CAPABILITIES = 1_000  # names in an orchestrator agent's capabilities
# Deeper JSON is refused: the REST responses are serialised by pydantic-core, which gives up at
# 255 levels (a list page wraps details in 3 more), and json's C codec at about 1,000 levels of
# the caller's whole stack, so a deeper value could be stored by one call and unreadable by the
# next. No real metadata comes near 100 levels.
MAX_JSON_DEPTH = 100
MAX_INT = 2**63 - 1  # BIGINT on PostgreSQL, INTEGER on SQLite
# Per-row caps chosen so that sums stay exact and finite on both engines: 9.2 million prompts
# at the cap still sum within a BIGINT, and costs far below the double's range. No real prompt
# comes near either (a trillion tokens; a billion dollars).
MAX_TOKENS = 10**12
MAX_COST_USD = 1e9


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def format_ts(value: datetime) -> str:
    """Return the fixed-shape ISO string every timestamp is stored and returned as."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def is_canonical_ts(value: str) -> bool:
    """Whether stored text has ``format_ts``'s shape (``2026-01-02T03:04:05.000006+00:00``), as
    every row this package writes has: a cheap check before parsing a time other tools wrote.

    Length and offset alone are not enough: ``2026-01-02 03:04:05.000006+00:00`` has both.
    """
    return len(value) == 32 and value[10] == "T" and value[19] == "." and value.endswith("+00:00")


class TimeRangeError(ValueError):
    """A well-formed time that cannot be taken, with the reason as its message (outside the
    years a datetime holds in UTC, or an instant no write takes)."""


def parse_ts(value: datetime | str) -> datetime:
    """Parse a caller's timestamp (datetime or ISO 8601 string; naive means UTC).

    Raises ValueError for text that is not ISO 8601, and its subclass TimeRangeError for a time
    whose UTC form falls outside years 1 to 9999 (``9999-12-31T23:59:59-01:00`` is in the year
    10000 in UTC).
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if not isinstance(value, datetime):
        raise ValueError("expected a datetime or an ISO 8601 string")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise TimeRangeError(f"{value.isoformat()} is outside years 1 to 9999 in UTC") from None


# The first and last instants a datetime holds. PostgreSQL's driver (asyncpg) sends them as
# -infinity and infinity, which PostgreSQL's date functions give no day for (a prune's
# rollups, costs by day): no write takes them, on either engine. Filters may (the infinities
# sort where the instants would).
_UNSTORABLE_TS = {
    datetime.min.replace(tzinfo=UTC): "the first instant a time can hold, which PostgreSQL "
    "stores as -infinity: use a later time",
    datetime.max.replace(tzinfo=UTC): "the last instant a time can hold, which PostgreSQL "
    "stores as infinity: use an earlier time",
}


def storable_ts(value: datetime | str) -> datetime:
    """``parse_ts`` for a time to be written: TimeRangeError for the two instants
    ``_UNSTORABLE_TS`` names too."""
    parsed = parse_ts(value)
    problem = _UNSTORABLE_TS.get(parsed)
    if problem is not None:
        raise TimeRangeError(f"{format_ts(parsed)} is {problem}")
    return parsed


UNPAIRED_SURROGATE = ("must not contain lone surrogates (unpaired UTF-16 code units, as "
                      "os.fsdecode gives for undecodable bytes)")


def text_problem(text: str) -> str | None:
    """Say why ``text`` cannot be stored as it is (NUL, a lone surrogate), or return None."""
    if "\x00" in text:
        return "must not contain NUL characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return UNPAIRED_SURROGATE
    return None


def clean_text(text: str, limit: int) -> str:
    """Return ``text`` made storable: NUL and lone surrogates escaped, cut to ``limit`` characters.

    For text from outside that must be kept rather than refused (log records, exception
    messages): the escapes show what was there.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[: limit - 20] + "… [truncated]"
    return text


_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    """Whether encoded JSON nests arrays and objects more than MAX_JSON_DEPTH levels."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # the usual case: no scan
        return False
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            return True
    return False


def encode_json(value: Any) -> JsonText | None:
    """Check and encode a JSON field once; raises ValueError saying what is wrong."""
    if value is None or isinstance(value, JsonText):
        return value
    try:
        text = dumps_json(value)
    except RecursionError:
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"must be JSON-serialisable ({exc})") from None
    if _too_deep(text):
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise ValueError("must not contain NUL characters")
    if not text.isascii() and (problem := text_problem(text)) is not None:
        raise ValueError(problem)
    if len(text) > MAX_JSON_BYTES // 4 and len(text.encode()) > MAX_JSON_BYTES:
        raise ValueError(f"is larger than {MAX_JSON_BYTES} bytes of JSON")
    return JsonText(text)


def _json_object(value: Any) -> Any:
    if value is not None and not isinstance(value, dict | JsonText):
        raise ValueError(f"must be a JSON object (dict), got {type(value).__name__}")
    return encode_json(value)


def _capabilities(value: Any) -> Any:
    # The seeds pass capabilities as "a,b,c"; the record keeps a list of strings.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _timestamp(value: Any) -> Any:
    if value is None or isinstance(value, datetime | str):
        return None if value is None else storable_ts(value)
    raise ValueError("expected a datetime or an ISO 8601 string")


# PostgreSQL text cannot hold NUL; refusing it on both engines keeps them identical. A pattern
# is checked inside pydantic-core, where a Python validator per field cost ~0.5 µs each.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(max_length=MAX_SHORT_CHARS, pattern=NO_NUL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=NO_NUL)]
Message = Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS, pattern=NO_NUL)]
Content = Annotated[str, StringConstraints(max_length=MAX_CONTENT_CHARS, pattern=NO_NUL)]
# Validated and encoded once: the model holds JsonText, which the store passes through.
JSONValue = Annotated[Any, BeforeValidator(encode_json)]
JSONObject = Annotated[Any, BeforeValidator(_json_object)]
Capabilities = Annotated[list[Name] | None, Field(max_length=MAX_CAPABILITIES),
                         BeforeValidator(_capabilities)]
Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]
Level = Annotated[LogLevel, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]
Count = Annotated[int, Field(ge=0, le=MAX_TOKENS, strict=True)]
# OpenTelemetry ids as the OTLP JSON encoding writes them: lowercase hex, 32 and 16 digits.
TraceId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
SpanId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]


def _agent_ref(value: Any) -> Any:
    # A reference to another agent: a canonical UUID string (as check_uuid gives), or None.
    if value is None or isinstance(value, uuid.UUID):
        return None if value is None else str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise ValueError("must be a UUID string")


AgentRef = Annotated[str | None, BeforeValidator(_agent_ref)]


def _number(value: Any) -> Any:
    # As for token counts (strict ints): True or "5" is a caller's mistake, not an amount.
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"must be a number, got {type(value).__name__}")
    return value


# -0.0 passes ge=0 but PostgreSQL returns it as 0.0: store 0.0 on both engines.
Cost = Annotated[float, BeforeValidator(_number),
                 Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False),
                 AfterValidator(lambda v: v + 0.0)]


def _now_text() -> str:
    return format_ts(utc_now())


# Ids are checked as the seed's validator does (any form uuid.UUID reads, kept canonical); the
# seed's models hold datetimes where ours hold the stored text: a datetime is formatted once.
RecordId = Annotated[str, BeforeValidator(_agent_ref)]
RecordTime = Annotated[str, BeforeValidator(lambda v: format_ts(v) if isinstance(v, datetime) else v)]
RecordTimeOrNone = RecordTime | None


class _Record(BaseModel):
    # Defaults as the seed's models have them (a new record is active / pending, now), so one
    # can be built by hand; the manager always returns every field, which the API schema says.
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    id: RecordId


class OrchestratorAgent(_Record):
    """An orchestrator agent definition, as returned by the manager."""

    name: str
    description: str | None = None
    agent_type: str | None = None
    capabilities: list[str] | None = None
    default_model: str | None = None
    status: OrchestratorAgentStatus = "active"
    metadata: dict[str, Any] | None = None
    created_at: RecordTime = Field(default_factory=_now_text)
    updated_at: RecordTime = Field(default_factory=_now_text)


class Agent(_Record):
    """A runtime agent inside a session, as returned by the manager."""

    orchestrator_agent_id: RecordId
    session_id: str
    name: str | None = None
    model: str | None = None
    status: AgentStatus = "pending"
    metadata: dict[str, Any] | None = None
    created_at: RecordTime = Field(default_factory=_now_text)
    updated_at: RecordTime = Field(default_factory=_now_text)
    started_at: RecordTimeOrNone = None
    completed_at: RecordTimeOrNone = None
    parent_agent_id: AgentRef = None
    trace_id: str | None = None
    span_id: str | None = None


class Prompt(_Record):
    """A prompt sent to an agent, with its response, tokens and cost."""

    agent_id: RecordId
    content: str
    response: str | None = None
    model: str | None = None
    status: PromptStatus = "pending"
    tokens_input: int = 0
    tokens_output: int = 0
    cost_usd: float = 0.0
    created_at: RecordTime = Field(default_factory=_now_text)
    completed_at: RecordTimeOrNone = None
    trace_id: str | None = None
    span_id: str | None = None


class AgentLog(_Record):
    """One log line of a runtime agent."""

    agent_id: RecordId
    log_level: LogLevel = "INFO"
    log_type: str = "event"
    message: str
    details: Any = None
    created_at: RecordTime = Field(default_factory=_now_text)
    trace_id: str | None = None
    span_id: str | None = None


class SystemLog(_Record):
    """One log line of the orchestrator itself."""

    log_level: LogLevel = "INFO"
    source: str | None = None
    message: str
    details: Any = None
    created_at: RecordTime = Field(default_factory=_now_text)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _create_model(record: type[_Record], name: str, doc: str, /, **inputs: Any) -> type[_Payload]:
    """The payload of a ``create_*`` call: these fields of ``record``, each with its input type.

    The input type carries what a caller's value must satisfy (sizes, no NUL, parsing of times
    and JSON); the default is the record's, so each is declared once. A ``(type, default)``
    pair gives the payload a default of its own (a log line's ``created_at``: None means now).
    """
    fields: dict[str, Any] = {}
    for field, spec in inputs.items():
        info = record.model_fields[field]
        fields[field] = spec if isinstance(spec, tuple) else (
            spec, ... if info.is_required() else info.default)
    return create_model(name, __base__=_Payload, __doc__=doc, __module__=__name__, **fields)


def _update_model(create: type[_Payload], name: str, doc: str, *fields: str) -> type[_Payload]:
    """The payload of an ``update_*`` call: these fields of ``create``, each optional (None)."""
    optional: dict[str, Any] = {}
    for field in fields:
        info = create.model_fields[field]
        annotation = info.rebuild_annotation()
        # A field whose default is None accepts None already (JSON fields take any value).
        optional[field] = (annotation if info.default is None else annotation | None, None)
    return create_model(name, __base__=_Payload, __doc__=doc, __module__=__name__, **optional)


if TYPE_CHECKING:  # to a type checker each is a payload model; their fields are made below
    OrchestratorAgentCreate: TypeAlias = _Payload
    AgentCreate: TypeAlias = _Payload
    PromptCreate: TypeAlias = _Payload
    AgentLogCreate: TypeAlias = _Payload
    SystemLogCreate: TypeAlias = _Payload
    OrchestratorAgentUpdate: TypeAlias = _Payload
    AgentUpdate: TypeAlias = _Payload
    PromptUpdate: TypeAlias = _Payload
    AgentLogUpdate: TypeAlias = _Payload
    SystemLogUpdate: TypeAlias = _Payload
else:
    OrchestratorAgentCreate = _create_model(
        OrchestratorAgent, "OrchestratorAgentCreate", "What ``create_orchestrator_agent`` accepts.",
        name=Name, description=Content | None, agent_type=Text | None, capabilities=Capabilities,
        default_model=Text | None, status=OrchestratorAgentStatus, metadata=JSONObject)
    AgentCreate = _create_model(
        Agent, "AgentCreate", "What ``create_agent`` accepts.",
        orchestrator_agent_id=str, session_id=Name, name=Text | None, model=Text | None,
        status=AgentStatus, metadata=JSONObject, started_at=Timestamp, completed_at=Timestamp,
        parent_agent_id=AgentRef, trace_id=TraceId | None, span_id=SpanId | None)
    PromptCreate = _create_model(
        Prompt, "PromptCreate", "What ``create_prompt`` accepts.",
        agent_id=str, content=Content, response=Content | None, model=Text | None,
        status=PromptStatus, tokens_input=Count, tokens_output=Count, cost_usd=Cost,
        completed_at=Timestamp, trace_id=TraceId | None, span_id=SpanId | None)
    AgentLogCreate = _create_model(
        AgentLog, "AgentLogCreate",
        "What ``create_agent_log`` accepts (one row of ``create_agent_logs``).",
        agent_id=str, message=Message, log_level=Level, log_type=Text, details=JSONValue,
        created_at=(Timestamp, None), trace_id=TraceId | None, span_id=SpanId | None)
    SystemLogCreate = _create_model(
        SystemLog, "SystemLogCreate",
        "What ``create_system_log`` accepts (one row of ``create_system_logs``).",
        message=Message, log_level=Level, source=Text | None, details=JSONValue,
        created_at=(Timestamp, None))

    OrchestratorAgentUpdate = _update_model(
        OrchestratorAgentCreate, "OrchestratorAgentUpdate",
        "Fields ``update_orchestrator_agent`` may change.",
        "name", "description", "agent_type", "capabilities", "default_model", "status", "metadata")
    AgentUpdate = _update_model(
        AgentCreate, "AgentUpdate", "Fields ``update_agent`` may change.",
        "orchestrator_agent_id", "session_id", "name", "model", "status", "metadata", "started_at",
        "completed_at", "parent_agent_id")
    PromptUpdate = _update_model(
        PromptCreate, "PromptUpdate", "Fields ``update_prompt`` may change.",
        "content", "response", "model", "status", "tokens_input", "tokens_output", "cost_usd",
        "completed_at")
    AgentLogUpdate = _update_model(
        AgentLogCreate, "AgentLogUpdate",
        "Fields ``update_agent_log`` may change (e.g. to redact a message that leaked a secret).",
        "log_level", "log_type", "message", "details")
    SystemLogUpdate = _update_model(
        SystemLogCreate, "SystemLogUpdate", "Fields ``update_system_log`` may change.",
        "log_level", "source", "message", "details")

# The payload model that validates each table's writable fields (import_rows uses them too).
CREATE_MODELS: dict[str, type[_Payload]] = {
    "orchestrator_agents": OrchestratorAgentCreate,
    "agents": AgentCreate,
    "prompts": PromptCreate,
    "agent_logs": AgentLogCreate,
    "system_logs": SystemLogCreate,
}


__all__ = [
    "AGENT_STATUSES",
    "LOG_LEVELS",
    "ORCHESTRATOR_AGENT_STATUSES",
    "PROMPT_STATUSES",
    "Agent",
    "AgentCreate",
    "AgentLog",
    "AgentLogCreate",
    "AgentLogUpdate",
    "AgentUpdate",
    "OrchestratorAgent",
    "OrchestratorAgentCreate",
    "OrchestratorAgentUpdate",
    "Prompt",
    "PromptCreate",
    "PromptUpdate",
    "SystemLog",
    "SystemLogCreate",
    "SystemLogUpdate",
    "format_ts",
    "parse_ts",
    "storable_ts",
    "TimeRangeError",
    "utc_now",
]
