"""Optional OpenTelemetry export of core's spans (OTLP over HTTP), off by default.

The lanes report each span they are (one per operator call, event publish or delivery,
egress request) with `report_span` on the `vivified.trace` logger, which is disabled unless
`VIVIFIED_OTLP_ENDPOINT` is set: then `install` attaches a handler that turns those records
into OpenTelemetry spans with core's own trace and span ids and ships them in batches.
opentelemetry-sdk and its OTLP exporter are imported only then (not a dependency of core:
`pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from vivified.config.operator_errors import OperatorError
from vivified.policy.tracecontext import TraceContext

span_log = logging.getLogger("vivified.trace")
OTLP_PACKAGES = "opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"


def report_span(
    name: str, ctx: TraceContext | None, seconds: float, **attributes: str | int | float
) -> None:
    """One span of this process that just ended after `seconds`; costs one level check when
    export is off."""
    if ctx is not None and span_log.isEnabledFor(logging.INFO):
        ended = time.time()
        span_log.info(name, extra={"span": (ctx, ended - seconds, ended, attributes)})


def disable() -> None:
    """No export (the default): the span logger is off and does not propagate."""
    span_log.handlers[:] = []
    span_log.propagate = False
    span_log.setLevel(logging.CRITICAL + 1)


def install(endpoint: str, process: str) -> None:
    """Export spans to `endpoint` (OTLP/HTTP, e.g. http://collector:4318/v1/traces);
    OperatorError naming the packages when the SDK is not installed."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found,unused-ignore]
        from opentelemetry.sdk.resources import Resource  # type: ignore[import-not-found,unused-ignore]
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise OperatorError(
            f"VIVIFIED_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed "
            f"({exc.name} missing): pip install {OTLP_PACKAGES}, or unset VIVIFIED_OTLP_ENDPOINT"
        ) from None
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
    resource = Resource.create({"service.name": "vivified", "service.instance.id": process})
    span_log.handlers[:] = [_SpanHandler(processor, resource)]
    span_log.propagate = False
    span_log.setLevel(logging.INFO)


class _SpanHandler(logging.Handler):
    def __init__(self, processor: Any, resource: Any) -> None:
        super().__init__()
        self._processor = processor
        self._resource = resource

    def emit(self, record: logging.LogRecord) -> None:
        from opentelemetry.sdk.trace import ReadableSpan  # type: ignore[import-not-found,unused-ignore]
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

        payload = getattr(record, "span", None)
        if payload is None:
            return
        ctx, started, ended, attributes = payload
        flags = TraceFlags(int(ctx.flags, 16))
        own = SpanContext(int(ctx.trace_id, 16), int(ctx.span_id, 16), False, flags)
        parent = (
            SpanContext(int(ctx.trace_id, 16), int(ctx.parent_id, 16), True, flags)
            if ctx.parent_id
            else None
        )
        span = ReadableSpan(
            name=record.getMessage(),
            context=own,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.SERVER,
            start_time=int(started * 1e9),
            end_time=int(ended * 1e9),
        )
        try:
            self._processor.on_end(span)
        except Exception:  # never let export break a request
            self.handleError(record)

    def close(self) -> None:
        self._processor.shutdown()
        super().close()
