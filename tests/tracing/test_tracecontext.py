"""W3C traceparent: what is continued, what starts a new trace (pure rules)."""

from __future__ import annotations

import pytest

from vivified.policy.tracecontext import (
    RANDOM_BYTES,
    TraceContext,
    continue_trace,
    from_headers,
    parse_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"
RANDOM = bytes(range(1, RANDOM_BYTES + 1))
NEW_TRACE = RANDOM[:16].hex()
CORE_SPAN = RANDOM[16:24].hex()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(VALID, id="sampled"),
        pytest.param(f"00-{TRACE}-{PARENT}-00", id="not-sampled"),
        pytest.param(f" {VALID}\t", id="optional-whitespace"),
        pytest.param(VALID.encode(), id="bytes"),
    ],
)
def test_valid_traceparent_is_continued(value: str | bytes) -> None:
    ctx = continue_trace(value, "vendor=abc", RANDOM)
    assert ctx.trace_id == TRACE
    assert ctx.parent_id == PARENT
    assert ctx.span_id == CORE_SPAN  # core's own span is the parent of what it sends on
    assert ctx.traceparent == f"00-{TRACE}-{CORE_SPAN}-{ctx.flags}"
    assert ctx.tracestate == "vendor=abc"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param(f"01-{TRACE}-{PARENT}-01", id="other-version"),
        pytest.param(f"ff-{TRACE}-{PARENT}-01", id="forbidden-version"),
        pytest.param(f"00-{'0' * 32}-{PARENT}-01", id="zero-trace-id"),
        pytest.param(f"00-{TRACE}-{'0' * 16}-01", id="zero-parent-id"),
        pytest.param(f"00-{TRACE.upper()}-{PARENT}-01", id="upper-case"),
        pytest.param(f"00-{TRACE[:-1]}-{PARENT}-01", id="short-trace-id"),
        pytest.param(f"00-{TRACE}-{PARENT}0-01", id="long-parent-id"),
        pytest.param(f"00-{TRACE}-{PARENT}-01-extra", id="extra-field"),
        pytest.param(f"00-{TRACE}-{PARENT}-0g", id="bad-flags"),
        pytest.param(f"00_{TRACE}_{PARENT}_01", id="wrong-separator"),
        pytest.param(b"00-\xff", id="not-ascii"),
    ],
)
def test_invalid_traceparent_starts_a_new_trace(value: str | bytes | None) -> None:
    assert parse_traceparent(value) is None
    ctx = continue_trace(value, "vendor=abc", RANDOM)
    assert ctx == TraceContext(NEW_TRACE, CORE_SPAN)  # the caller's tracestate goes with it
    assert ctx.traceparent == f"00-{NEW_TRACE}-{CORE_SPAN}-01"


def test_headers_two_different_traceparents_are_invalid() -> None:
    other = f"00-{'1' * 32}-{PARENT}-01"
    ctx = from_headers([(b"traceparent", VALID.encode()), (b"Traceparent", other.encode())], RANDOM)
    assert ctx.trace_id == NEW_TRACE
    ctx = from_headers([(b"TraceParent", VALID.encode()), (b"tracestate", b"a=1")], RANDOM)
    assert (ctx.trace_id, ctx.tracestate) == (TRACE, "a=1")
    assert ctx.headers() == [
        (b"traceparent", f"00-{TRACE}-{CORE_SPAN}-01".encode()),
        (b"tracestate", b"a=1"),
    ]


@pytest.mark.parametrize(
    ("state", "kept"),
    [
        pytest.param("a=1,b=2", "a=1,b=2", id="kept"),
        pytest.param("x" * 513, "", id="too-long-dropped"),
        pytest.param("a=\u00e9", "", id="non-ascii-dropped"),
        pytest.param("a=1\r\nX-Evil: 1", "", id="crlf-dropped"),
    ],
)
def test_tracestate_is_kept_only_when_sane(state: str, kept: str) -> None:
    assert continue_trace(VALID, state, RANDOM).tracestate == kept


def test_random_span_of_zeros_is_never_sent() -> None:
    ctx = continue_trace(VALID, None, bytes(RANDOM_BYTES))
    assert ctx.span_id != "0" * 16
    assert parse_traceparent(ctx.traceparent) is not None
    assert parse_traceparent(continue_trace(None, None, bytes(RANDOM_BYTES)).traceparent)
