"""Trace context in the gateway: one `TraceContext` per request, kept in the ASGI scope.

The caller's `traceparent`/`tracestate` are continued when valid (else a new trace starts,
see `vivified.policy.tracecontext`); core is one span of the trace and names that span as
the parent of what it sends on: the operator lane's request to the target, the event it
stores (CloudEvents `traceparent` extension) and, from there, each webhook delivery.

Audit records carry the trace id in `detail` under `TRACE_KEY`, not in a column of its own:
`detail` is already covered by the hash chain (`registry/audit/chain.HASHED_COLUMNS`), so
records written before and after stay verifiable with one rule and no migration; the id is
metadata about the call, like the route or the event type already kept there.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.types import Scope

from vivified.policy.tracecontext import (
    AUDIT_KEY,
    RANDOM_BYTES,
    TRACEPARENT,
    TRACESTATE,
    TraceContext,
    continue_trace,
    from_headers,
    parse_traceparent,
)

TRACE_KEY = AUDIT_KEY  # the key of the trace id in every audit record's detail
_STATE = "trace"


def begin(scope: Scope) -> TraceContext:
    """This request's trace context (made from its headers on first use, then kept)."""
    state = scope.setdefault("state", {})
    ctx: TraceContext | None = state.get(_STATE)
    if ctx is None:
        ctx = from_headers(scope.get("headers") or [], os.urandom(RANDOM_BYTES))
        state[_STATE] = ctx
    return ctx


def trace_of(request: Request) -> TraceContext:
    """`begin` for a Starlette request."""
    return begin(request.scope)


def with_trace(detail: dict[str, Any], ctx: TraceContext | None) -> dict[str, Any]:
    """`detail` with the trace id under `TRACE_KEY` (when there is a trace)."""
    if ctx is not None:
        detail[TRACE_KEY] = ctx.trace_id
    return detail


def event_extension(ctx: TraceContext) -> dict[str, str]:
    """The CloudEvents distributed-tracing extension attributes of an event core stores."""
    out = {TRACEPARENT: ctx.traceparent}
    if ctx.tracestate:
        out[TRACESTATE] = ctx.tracestate
    return out


def trace_id_of(event: dict[str, Any]) -> str:
    """The trace `event` belongs to: its `traceparent`'s, else one derived from its publisher
    and id (events stored without one), the same at every attempt and replay."""
    parsed = parse_traceparent(_str(event.get(TRACEPARENT)))
    if parsed is not None:
        return parsed[0]
    pair = f"{event.get('source', '')}\n{event.get('id', '')}".encode()
    return hashlib.sha256(pair).hexdigest()[:32]


def of_event(event: dict[str, Any]) -> TraceContext:
    """Core's span delivering `event`: a child of the span that stored it."""
    ctx = continue_trace(
        _str(event.get(TRACEPARENT)), _str(event.get(TRACESTATE)), os.urandom(RANDOM_BYTES)
    )
    trace_id = trace_id_of(event)
    return ctx if ctx.trace_id == trace_id else replace(ctx, trace_id=trace_id)


def event_headers(event: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """`traceparent` (and `tracestate`) of a webhook delivering `event`."""
    return of_event(event).headers()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
