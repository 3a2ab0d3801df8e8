"""W3C Trace Context (`traceparent`, `tracestate`): parse, validate, continue, format. Pure.

A caller's `traceparent` is kept only when it is valid for version 00: four dash-separated
lower-case hex fields of 2, 32, 16 and 2 digits, neither id all zeros. Anything else (another
version, upper case, a wrong length, the all-zero ids, extra fields) starts a new trace, and
the caller's `tracestate` goes with it (it belongs to the trace it came with). Core is one
span of the trace: the ids it passes on name its own span as the parent.

Randomness comes in as bytes (`os.urandom(24)` at the call site): this module does no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
AUDIT_KEY = "trace_id"  # where every lane's audit record keeps the trace id, in `detail`
RANDOM_BYTES = 24  # 16 for a new trace id, 8 for core's span id
MAX_TRACESTATE = 512  # W3C: 32 list members; longer values are dropped, not cut

_PARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_STATE = re.compile(r"[\x20-\x7e]*")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
SAMPLED = "01"


@dataclass(frozen=True)
class TraceContext:
    """One hop of a trace: core's own span (`span_id`) and the caller's (`parent_id`, empty
    when core started the trace)."""

    trace_id: str
    span_id: str
    parent_id: str = ""
    flags: str = SAMPLED
    tracestate: str = ""

    @property
    def traceparent(self) -> str:
        """The `traceparent` core sends on: this trace, core's span as the parent."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def headers(self) -> list[tuple[bytes, bytes]]:
        """`traceparent` (and `tracestate` when there is one) as raw header pairs."""
        out = [(b"traceparent", self.traceparent.encode("ascii"))]
        if self.tracestate:
            out.append((b"tracestate", self.tracestate.encode("ascii")))
        return out

    def child(self, random: bytes) -> TraceContext:
        """The next span of this trace, with this one as its parent (`random`: 8+ bytes)."""
        return TraceContext(
            self.trace_id, _span(random[-8:]), self.span_id, self.flags, self.tracestate
        )


def parse_traceparent(value: str | bytes | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid version-00 `traceparent`, else None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _PARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    trace_id, parent_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags


def clean_tracestate(value: str | bytes | None) -> str:
    """The caller's `tracestate` if it is printable ASCII of a sane length, else empty."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return ""
    value = value.strip(" \t")
    if len(value) > MAX_TRACESTATE or not _STATE.fullmatch(value):
        return ""
    return value


def _span(random: bytes) -> str:
    span = random[:8].hex()
    return span if span != _ZERO_SPAN else "0" * 15 + "1"


def continue_trace(
    traceparent: str | bytes | None, tracestate: str | bytes | None, random: bytes
) -> TraceContext:
    """Core's span of the caller's trace, or of a new trace when the caller sent none or an
    invalid one. `random` is `RANDOM_BYTES` fresh random bytes."""
    if len(random) < RANDOM_BYTES:
        raise ValueError(f"continue_trace needs {RANDOM_BYTES} random bytes")
    span = _span(random[16:24])
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        trace = random[:16].hex()
        if trace == _ZERO_TRACE:
            trace = "0" * 31 + "1"
        return TraceContext(trace, span)
    trace_id, parent_id, flags = parsed
    return TraceContext(trace_id, span, parent_id, flags, clean_tracestate(tracestate))


def from_headers(headers: list[tuple[bytes, bytes]], random: bytes) -> TraceContext:
    """`continue_trace` from raw ASGI/HTTP headers (the first `traceparent` counts; several
    differing ones make the value invalid, as W3C asks)."""
    parents = [v for k, v in headers if k.lower() == b"traceparent"]
    states = [v for k, v in headers if k.lower() == b"tracestate"]
    parent = parents[0] if len(set(parents)) == 1 else None
    state = b",".join(states) if states else None
    return continue_trace(parent, state, random)
