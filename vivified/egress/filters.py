"""Body streams and header helpers: request byte counts, response stripping, size caps."""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http

from vivified.egress.headers import folded, native
from vivified.policy.egress_settings import FilterRule

SMALL_BODY = 256 * 1024  # declared bodies up to this size are buffered, larger ones streamed


def needs_streaming(headers: http.Headers) -> bool:
    """Stream (count without buffering) bodies that are chunked or declared large; small
    declared bodies go through mitmproxy's buffered path, which is cheaper per request."""
    lengths: list[bytes] = []
    for key, value in headers.fields:  # one walk (see `headers`)
        low = key.lower()
        if low == b"transfer-encoding":
            return True
        if low == b"content-length":
            lengths.append(value)
    length = folded(lengths)  # as `headers.get` answers
    return length is not None and (not length.isdigit() or int(length) > SMALL_BODY)


def strip_headers(headers: http.Headers, rule: FilterRule) -> list[str]:
    """Remove every header the rule strips (always `X-Vivified-*`); return the names removed,
    each once, as first spelt. One walk, one assignment (see `headers`)."""
    removed: list[str] = []
    seen: set[str] = set()
    kept = []
    for field in headers.fields:
        name = native(field[0])
        if not rule.strips(name):
            kept.append(field)
            continue
        low = name.lower()
        if low not in seen:
            seen.add(low)
            removed.append(name)
    if removed:
        headers.fields = tuple(kept)
    return removed


def declared_length(values: list[bytes] | None) -> int | None:
    """The Content-Length an upstream announced (the raw values of every `Content-Length`
    field), if it is a single valid number."""
    if not values or len(values) != 1:
        return None
    value = native(values[0]).strip()
    return int(value) if value.isdigit() else None


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
