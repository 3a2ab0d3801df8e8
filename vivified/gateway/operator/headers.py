"""Which headers cross the operator lane, in each direction.

Towards the target: hop-by-hop headers (and every header the caller names in `Connection`),
its credentials (`Authorization`, `Cookie`, `Proxy-Authorization`) and anything that claims an
identity or a route (`X-Vivified-*`, `Forwarded`, `X-Forwarded-*`, `X-Real-IP`) are dropped;
core adds its own, which the target can trust. Towards the caller: hop-by-hop headers go.

Names are compared case-insensitively with `_` folded to `-`: servers that read headers the
CGI way (`HTTP_X_VIVIFIED_CALLER`) cannot tell `X_Vivified_Caller` from `X-Vivified-Caller`,
so the underscore spelling of every stripped header is stripped too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
CALLER_ONLY = frozenset(
    {b"authorization", b"cookie", b"forwarded", b"x-real-ip", b"host", b"content-length"}
    # the caller's trace context is continued, not copied: core adds its own (upstream.py)
    | {b"traceparent", b"tracestate"}
)
_SPOOFABLE_PREFIXES = (b"x-vivified-", b"x-forwarded-")

Headers = list[tuple[bytes, bytes]]
REQUEST_ID = b"x-vivified-request-id"


def folded(name: bytes) -> bytes:
    """A header name as stripping compares it: lower case, `_` read as `-`."""
    low = name.lower()
    return low.replace(b"_", b"-") if b"_" in low else low


def _connection_named(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if folded(key) == b"connection":
            named.update(folded(t.strip()) for t in value.split(b",") if t.strip())
    return named


def request_headers(
    raw: Sequence[tuple[bytes, bytes]], added: Sequence[tuple[bytes, bytes]]
) -> Headers:
    """The headers sent to the target: the caller's, filtered, then core's `added` ones.
    `content-length` is re-added by the client from the body it streams."""
    named = _connection_named(raw)
    out: Headers = []
    for key, value in raw:
        name = folded(key)
        if (
            name in HOP_BY_HOP
            or name in CALLER_ONLY
            or name in named
            or name.startswith(_SPOOFABLE_PREFIXES)
        ):
            continue
        out.append((key.lower(), value))
    out.extend(added)
    return out


def response_headers(raw: Iterable[tuple[bytes, bytes]], request_id: str) -> Headers:
    """The target's response headers minus hop-by-hop ones (the server re-frames the body)
    and any request id it claims; core's request id is added."""
    pairs = list(raw)
    named = _connection_named(pairs)
    out = [
        (k.lower(), v)
        for k, v in pairs
        if (name := folded(k)) not in HOP_BY_HOP and name not in named and name != REQUEST_ID
    ]
    out.append((REQUEST_ID, request_id.encode()))
    return out


def header_value(raw: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in raw if k.lower() == name]
