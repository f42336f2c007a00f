"""OpenTelemetry in (design §11): OTLP traces and logs become agents, prompts and logs.

- ``protocol.py``: OTLP/HTTP bodies (protobuf or JSON, gzip) in, Export…ServiceResponse out;
- ``spans.py``, ``values.py``: spans and attributes as Python, and what the GenAI, OpenInference
  and OpenLLMetry conventions say about them;
- ``plan.py``: the mapping from spans to rows, with no database in sight;
- ``traces.py``, ``logs.py``, ``storage.py``: lookups and batched, validated writes;
- ``resolve.py``: linking what arrived out of order, also from other processes;
- ``receiver.py``: ``OtlpReceiver``, the ingest queue with backpressure that ``serve`` runs.

Built on the core's public API (``CoreManager``); the API mounts ``/v1/traces`` and ``/v1/logs``
on top of ``OtlpReceiver``.
"""

from .protocol import (
    JSON,
    PROTOBUF,
    BadRequest,
    OtlpError,
    UnsupportedMediaType,
    body_encoding,
    media_type,
    response_body,
)
from .receiver import Busy, OtlpReceiver, Result, Unavailable

__all__ = ["JSON", "PROTOBUF", "BadRequest", "Busy", "OtlpError", "OtlpReceiver", "Result",
           "Unavailable", "UnsupportedMediaType", "body_encoding", "media_type", "response_body"]
