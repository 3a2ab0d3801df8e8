"""What the egress addon keeps per flow and connection, and small header/name helpers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from vivified.egress.records import Outcome
from vivified.policy.decision import Decision
from vivified.policy.hosts import HostError, parse_host
from vivified.registry.audit import AuditEvent

__all__ = [
    "AUDITED",
    "DENIED",
    "OUTCOME",
    "SMALL_BODY",
    "AuditSink",
    "SnapshotSource",
    "Target",
    "Tunnel",
    "needs_streaming",
    "same_authority",
    "same_name",
]


# flow.metadata keys
OUTCOME = "vivified.outcome"
AUDITED = "vivified.audited"
DENIED = "vivified.denied"
TIMED_OUT = "vivified.timed_out"  # the 504 stands in for the upstream's missing answer


class SnapshotSource(Protocol):
    @property
    def current(self) -> Any: ...


class AuditSink(Protocol):
    def record_nowait(self, event: AuditEvent) -> bool: ...

    async def record(self, event: AuditEvent) -> None: ...


@dataclass
class Target:
    """An authorised destination: the normalised name and the one address it may reach."""

    plugin_id: str
    host: str
    port: int
    address: str
    decision: Decision
    mode: str
    passthrough: bool


@dataclass
class Tunnel:
    """State of one authorised CONNECT, keyed by the client connection."""

    target: Target
    started: float
    request_id: str
    layer_decided: bool = False
    expired: bool = False
    timer: asyncio.TimerHandle | None = None
    outcome: Outcome | None = None


SMALL_BODY = 256 * 1024  # declared bodies up to this size are buffered, larger ones streamed


def needs_streaming(headers: Any) -> bool:
    """Stream (count without buffering) bodies that are chunked or declared large; small
    declared bodies go through mitmproxy's buffered path, which is cheaper per request."""
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length")
    return length is not None and (not length.isdigit() or int(length) > SMALL_BODY)


def same_name(value: str | None, host: str) -> bool:
    if not value:
        return False
    try:
        return bool(parse_host(value).value == host)
    except HostError:
        return False


def same_authority(authority: str, host: str, port: int, default_port: int) -> bool:
    """Whether a Host header names exactly `host:port` (after normalisation)."""
    value = authority.strip()
    hostpart, got_port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return False
        hostpart, rest = value[: end + 1], value[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return False
            got_port = int(rest[1:])
    elif value.count(":") == 1:
        hostpart, _, p = value.partition(":")
        if not p.isdigit():
            return False
        got_port = int(p)
    if got_port != port:
        return False
    try:
        expected = parse_host(host).value
        return bool(parse_host(hostpart).value == expected)
    except HostError:
        return False
