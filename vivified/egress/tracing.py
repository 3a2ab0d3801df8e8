"""Trace context on the proxy lane: a mitmproxy addon, second in the chain.

Every CONNECT and request continues the plugin's W3C trace (`traceparent`, `tracestate`),
or starts one when it sent none or an invalid one (`vivified.policy.tracecontext`). A request
forwarded upstream carries `traceparent` with the proxy's own span as the parent (an invalid
one from the plugin is replaced, its `tracestate` dropped). The flow's audit record keeps the
trace id in `detail` under `AUDIT_KEY`, as the gateway's lanes do.
"""

from __future__ import annotations

import os
import time

from mitmproxy import http

from vivified.config.otlp import report_span
from vivified.egress.flow_state import outcome
from vivified.egress.headers import put
from vivified.policy.tracecontext import (
    AUDIT_KEY,
    RANDOM_BYTES,
    TRACEPARENT,
    TRACESTATE,
    TraceContext,
    from_headers,
)

TRACE = "vivified.trace"  # flow.metadata: this flow's TraceContext
_PARENT, _STATE = TRACEPARENT.encode(), TRACESTATE.encode()


def _begin(flow: http.HTTPFlow) -> TraceContext:
    ctx = from_headers(list(flow.request.headers.fields), os.urandom(RANDOM_BYTES))
    flow.metadata[TRACE] = ctx
    o = outcome(flow)
    if o is not None:
        o.extra[AUDIT_KEY] = ctx.trace_id
    return ctx


class Tracing:
    """Continues (or starts) the trace of each CONNECT and request; after `OpenRecord`."""

    def http_connect(self, flow: http.HTTPFlow) -> None:
        _begin(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        ctx = _begin(flow)
        state = ctx.tracestate.encode() if ctx.tracestate else None
        put(flow.request.headers, {_PARENT: ctx.traceparent.encode(), _STATE: state})

    def response(self, flow: http.HTTPFlow) -> None:
        self._span(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._span(flow)

    @staticmethod
    def _span(flow: http.HTTPFlow) -> None:
        o = outcome(flow)
        ctx = flow.metadata.get(TRACE)
        if o is not None and isinstance(ctx, TraceContext):
            elapsed = max(0.0, time.time() - o.started) if o.started else 0.0
            status = flow.response.status_code if flow.response is not None else o.status
            report_span("egress", ctx, elapsed, target=f"{o.host}:{o.port}", status=status)
