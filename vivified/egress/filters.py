"""Body streams and header helpers: request byte counts, response stripping, size caps."""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from vivified.policy.egress_settings import FilterRule

SMALL_BODY = 256 * 1024  # declared bodies up to this size are buffered, larger ones streamed


def needs_streaming(headers: http.Headers) -> bool:
    """Stream (count without buffering) bodies that are chunked or declared large; small
    declared bodies go through mitmproxy's buffered path, which is cheaper per request."""
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length")
    return length is not None and (not length.isdigit() or int(length) > SMALL_BODY)


def strip_headers(headers: http.Headers, rule: FilterRule) -> list[str]:
    """Remove every header the rule strips (always `X-Vivified-*`); return the names removed."""
    removed = [name for name in list(headers.keys()) if rule.strips(name)]
    for name in removed:
        headers.pop(name, None)
    return removed


def declared_length(headers: http.Headers) -> int | None:
    """The Content-Length an upstream announced, if it is a single valid number."""
    values = headers.get_all("content-length")
    if len(values) != 1 or not values[0].strip().isdigit():
        return None
    return int(values[0])


class CountingStream:
    """A `flow.request.stream` callable that passes chunks through and counts them."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, data: bytes) -> bytes:
        self.total += len(data)
        return data


class LimitedStream:
    """A `flow.response.stream` callable: passes at most `limit` bytes, then calls `on_overflow`
    once (which cuts the connection) and drops the rest. Nothing is buffered."""

    def __init__(self, limit: int | None, on_overflow: Callable[[], None]) -> None:
        self.limit = limit
        self.total = 0
        self.passed = 0
        self.overflowed = False
        self._on_overflow = on_overflow

    def __call__(self, data: bytes) -> bytes:
        self.total += len(data)
        if self.overflowed:
            return b""
        if self.limit is not None and self.total > self.limit:
            self.overflowed = True
            keep = max(0, self.limit - self.passed)
            self.passed += keep
            self._on_overflow()
            return data[:keep]
        self.passed += len(data)
        return data


class ReplacementStream:
    """Sends a fixed body in place of the upstream's, which is read and discarded."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.sent = False
        self.total = 0

    def __call__(self, data: bytes) -> bytes:
        self.total += len(data)
        if self.sent:
            return b""
        self.sent = True
        return self._body
