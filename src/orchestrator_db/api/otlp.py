"""OTLP/HTTP receivers on the API's own port: ``POST /v1/traces`` and ``POST /v1/logs``.

So ``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8000`` is all an exporter needs (the SDKs
append these paths). Thin: the body goes to the app's ``OtlpReceiver``, which answers once the
records are committed; this module only turns its answer and its errors into HTTP. Errors use
the service's one JSON shape (OTLP clients only read the status): 415 for a content type or
encoding other than OTLP protobuf/JSON and gzip, 400 for a body that does not parse, 429 and
503 with Retry-After (the codes OTLP exporters retry) when the queue is full or the database
fails — never a 500.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from ..otlp import Busy, OtlpError, OtlpReceiver, Unavailable, media_type, response_body
from ..otlp.protocol import Signal, body_encoding
from .errors import error_response

router = APIRouter(tags=["opentelemetry"])
logger = logging.getLogger("orchestrator_db.api")


@router.post("/v1/traces", include_in_schema=False)
async def export_traces(request: Request) -> Response:
    """Receive OTLP spans (ExportTraceServiceRequest)."""
    return await _export(request, "traces")


@router.post("/v1/logs", include_in_schema=False)
async def export_logs(request: Request) -> Response:
    """Receive OTLP log records (ExportLogsServiceRequest)."""
    return await _export(request, "logs")


async def _export(request: Request, signal: Signal) -> Response:
    receiver: OtlpReceiver = request.app.state.otlp
    content_type = request.headers.get("content-type")
    try:
        encoding = body_encoding(content_type)
        body = await request.body()
        result = await receiver.export(signal, body, content_type,
                                       request.headers.get("content-encoding"))
    except (Busy, Unavailable) as exc:
        status = 429 if isinstance(exc, Busy) else 503
        return error_response(status, type(exc).__name__, exc.message,
                              headers={"retry-after": str(exc.retry_after)})
    except OtlpError as exc:
        return error_response(exc.status, type(exc).__name__, exc.message, exc.field)
    except Exception as exc:  # a bug: logged; 503 so the exporter keeps the data and retries
        logger.error("OTLP %s export failed", signal, exc_info=exc)
        return error_response(503, "InternalError", "the export could not be processed; see "
                              "the server log", headers={"retry-after": "5"})
    return Response(response_body(signal, encoding, result.rejected, result.message),
                    media_type=media_type(encoding))
