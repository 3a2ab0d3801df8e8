"""Which headers cross the operator lane, in each direction.

Towards the target: hop-by-hop headers (and every header the caller names in `Connection`),
its credentials (`Authorization`, `Cookie`, `Proxy-Authorization`) and anything that claims an
identity or a route (`X-Vivified-*`, `Forwarded`, `X-Forwarded-*`, `X-Real-IP`) are dropped;
core adds its own, which the target can trust. Towards the caller: hop-by-hop headers go.
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
)
_SPOOFABLE_PREFIXES = (b"x-vivified-", b"x-forwarded-")

Headers = list[tuple[bytes, bytes]]
REQUEST_ID = b"x-vivified-request-id"


def _connection_named(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return named


def request_headers(
    raw: Sequence[tuple[bytes, bytes]], added: Sequence[tuple[bytes, bytes]]
) -> Headers:
    """The headers sent to the target: the caller's, filtered, then core's `added` ones.
    `content-length` is re-added by the client from the body it streams."""
    named = _connection_named(raw)
    out: Headers = []
    for key, value in raw:
        low = key.lower()
        if (
            low in HOP_BY_HOP
            or low in CALLER_ONLY
            or low in named
            or low.startswith(_SPOOFABLE_PREFIXES)
        ):
            continue
        out.append((low, value))
    out.extend(added)
    return out


def response_headers(raw: Iterable[tuple[bytes, bytes]], request_id: str) -> Headers:
    """The target's response headers minus hop-by-hop ones (the server re-frames the body)
    and any request id it claims; core's request id is added."""
    pairs = list(raw)
    named = _connection_named(pairs)
    out = [
        (low, v)
        for low, v in ((k.lower(), v) for k, v in pairs)
        if low not in HOP_BY_HOP and low not in named and low != REQUEST_ID
    ]
    out.append((REQUEST_ID, request_id.encode()))
    return out


def header_value(raw: Iterable[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in raw if k.lower() == name]
