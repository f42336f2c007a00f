"""OTLP/HTTP bodies: protobuf or JSON, maybe gzipped, in; the Export…ServiceResponse out.

Parsed with ``opentelemetry-proto``'s generated classes (protobuf's C parser), never by hand.
OTLP JSON differs from protobuf's canonical JSON in one way that matters: trace and span ids are
hex strings, not base64 (the OTLP specification, "JSON Protobuf Encoding"); they are turned into
the canonical form before protobuf's JSON parser sees them. Base64 ids, as ``json_format`` writes
them, are accepted too (their length tells them apart).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import zlib
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..errors import OrchestratorDBError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
Encoding = Literal["protobuf", "json"]
Signal = Literal["traces", "logs"]
# A gzipped body may expand to at most this much: a small bomb must not take the server's memory.
MAX_DECODED_BYTES = 64 * 1024 * 1024
# Exporters send one gzip member; a concatenation of a few is valid gzip. Many thousands are no
# exporter's output (a body of empty members costs work for nothing).
MAX_GZIP_MEMBERS = 1000
_INFLATE_CHUNK = 64 * 1024


class OtlpError(OrchestratorDBError):
    """An OTLP request the receiver cannot take (the HTTP status says why)."""

    status = 400


class UnsupportedMediaType(OtlpError):
    """The body is neither OTLP protobuf nor OTLP JSON, or its encoding is unknown."""

    status = 415


class BadRequest(OtlpError):
    """The body does not parse as the OTLP message it should be."""

    status = 400


def body_encoding(content_type: str | None) -> Encoding:
    """Return how a body is encoded from its Content-Type, or raise UnsupportedMediaType."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return "protobuf"
    if media == JSON:
        return "json"
    raise UnsupportedMediaType(
        f"unsupported content type {content_type!r}: send {PROTOBUF} or {JSON}",
        field="content-type")


def decompress(body: bytes, content_encoding: str | None) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip), refusing bodies that expand too far."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedMediaType(
            f"unsupported content encoding {content_encoding!r}: send gzip or none",
            field="content-encoding")
    parts: list[bytes] = []
    size = pos = members = 0
    while True:  # one gzip member after another, as gzip itself writes a concatenation
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise BadRequest(f"the body has more than {MAX_GZIP_MEMBERS} gzip members")
        member, pos = _inflate_member(body, pos, MAX_DECODED_BYTES - size)
        parts.append(member)
        size += len(member)
        if body[pos:pos + 2] == b"\x1f\x8b":
            continue
        rest = len(body) - pos
        if body.count(0, pos) != rest:  # not the end, nor gzip's zero padding
            raise BadRequest(f"the body has {rest} bytes after its gzip data")
        return b"".join(parts)


def _inflate_member(body: bytes, pos: int, room: int) -> tuple[bytes, int]:
    """Inflate the gzip member at ``body[pos:]`` (to at most ``room`` bytes); return it and the
    position after the member.

    The input goes in by slices of a memoryview, so a body of many members costs its length,
    not its length times the number of members (each inflater keeps a copy of the input it
    did not use).
    """
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    view = memoryview(body)
    parts: list[bytes] = []
    size = 0
    try:
        while not inflater.eof and pos < len(body):
            chunk = view[pos:pos + _INFLATE_CHUNK]
            pos += len(chunk)
            data = inflater.decompress(chunk, room - size + 1)  # + 1: a limit of 0 means none
            size += len(data)
            if inflater.unconsumed_tail or size > room:
                raise BadRequest(
                    f"the gzipped body expands to more than {MAX_DECODED_BYTES} bytes")
            parts.append(data)
        data = inflater.flush()
    except zlib.error as exc:
        raise BadRequest(f"the body is not valid gzip: {exc}") from exc
    size += len(data)
    parts.append(data)
    if size > room:
        raise BadRequest(f"the gzipped body expands to more than {MAX_DECODED_BYTES} bytes")
    if not inflater.eof:
        raise BadRequest("the gzipped body is truncated")
    return b"".join(parts), pos - len(inflater.unused_data)


RequestMessage = ExportTraceServiceRequest | ExportLogsServiceRequest


def parse(signal: Signal, body: bytes, encoding: Encoding) -> Any:
    """Return the Export…ServiceRequest a body holds, or raise BadRequest."""
    message: RequestMessage = (ExportTraceServiceRequest() if signal == "traces"
                               else ExportLogsServiceRequest())
    if encoding == "protobuf":
        try:
            message.ParseFromString(body)
        except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
            raise BadRequest(f"the body is not an OTLP {signal} protobuf message: {exc}") from exc
        return message
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        _canonical_ids(document, signal)
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise BadRequest(f"the body is not an OTLP {signal} JSON message: {exc}") from exc
    return message


_ID_LENGTHS = {"traceId": 16, "trace_id": 16, "spanId": 8, "span_id": 8, "parentSpanId": 8,
               "parent_span_id": 8}


def _canonical_ids(document: dict[str, Any], signal: Signal) -> None:
    """Rewrite the hex ids of an OTLP JSON document as base64, as protobuf's parser expects."""
    resources = document.get("resourceSpans" if signal == "traces" else "resourceLogs")
    if resources is None:
        resources = document.get("resource_spans" if signal == "traces" else "resource_logs")
    for resource in _list(resources):
        scopes = resource.get("scopeSpans", resource.get("scope_spans")) if signal == "traces" \
            else resource.get("scopeLogs", resource.get("scope_logs"))
        for scope in _list(scopes):
            items = scope.get("spans") if signal == "traces" else scope.get(
                "logRecords", scope.get("log_records"))
            for item in _list(items):
                _fix_ids(item)
                for link in _list(item.get("links")):
                    _fix_ids(link)


def _list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"expected a JSON array, got {type(value).__name__}")
    return [v for v in value if isinstance(v, dict)]


def _fix_ids(item: dict[str, Any]) -> None:
    """Rewrite an item's ids as the base64 of the bytes they spell, whatever their size.

    An id of the wrong size, or one that spells no bytes, is not a reason to refuse the whole
    request: it goes on as protobuf's would (the wrong bytes, or absent), so the one span or
    record is judged by ``spans.views`` and ``logs`` whichever encoding carried it, and the
    rest of the batch is stored.
    """
    for key, size in _ID_LENGTHS.items():
        value = item.get(key)
        if not isinstance(value, str) or not value:
            continue
        raw = _id_bytes(value, size)
        if raw is None:
            del item[key]
        else:
            item[key] = base64.b64encode(raw).decode("ascii")


_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


def _id_bytes(value: str, size: int) -> bytes | None:
    """The bytes an id spells: hex as OTLP JSON writes it, or base64 as protobuf's JSON does
    (the reading that gives ``size`` bytes first); None when it spells neither."""
    spelled = []
    if _HEX.fullmatch(value):
        spelled.append(bytes.fromhex(value))
    with contextlib.suppress(binascii.Error, ValueError):
        spelled.append(base64.b64decode(value, validate=True))
    for raw in spelled:
        if len(raw) == size:
            return raw
    return spelled[0] if spelled else None


def response_body(signal: Signal, encoding: Encoding, rejected: int, error_message: str
                  ) -> bytes:
    """The Export…ServiceResponse, in the request's encoding, with its partial success."""
    if encoding == "json":
        key = "rejectedSpans" if signal == "traces" else "rejectedLogRecords"
        partial: dict[str, Any] = {key: rejected}
        if error_message:
            partial["errorMessage"] = error_message
        return json.dumps({"partialSuccess": partial}).encode()
    response: ExportTraceServiceResponse | ExportLogsServiceResponse
    if signal == "traces":
        response = ExportTraceServiceResponse()
        response.partial_success.rejected_spans = rejected
    else:
        response = ExportLogsServiceResponse()
        response.partial_success.rejected_log_records = rejected
    response.partial_success.error_message = error_message
    response.partial_success.SetInParent()
    data: bytes = response.SerializeToString()
    return data


def media_type(encoding: Encoding) -> str:
    """The Content-Type of a response in ``encoding``."""
    return PROTOBUF if encoding == "protobuf" else JSON


__all__ = ["JSON", "MAX_DECODED_BYTES", "PROTOBUF", "BadRequest", "Encoding", "OtlpError",
           "Signal", "UnsupportedMediaType", "body_encoding", "decompress", "media_type",
           "parse", "response_body"]
