"""Audit records of the proxy lane: one per CONNECT, per request, per tunnel, per denial."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vivified.registry.audit.writer import AuditEvent

LANE = "egress"


@dataclass
class Outcome:
    """What happened to one CONNECT, request or tunnel; becomes exactly one audit record."""

    action: str  # connect | request | tunnel
    actor: str
    host: str
    port: int
    decision: str = "deny"  # allow | deny | report
    reason: str = ""
    status: int = 0
    request_id: str = ""
    address: str = ""
    method: str = ""
    path: str = ""
    mode: str = ""
    started: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def strip_query(path: str) -> str:
    """The path without query values (keys kept, values dropped)."""
    base, sep, query = path.partition("?")
    if not sep:
        return base
    keys = [part.split("=", 1)[0] for part in query.split("&") if part]
    return base + "?" + "&".join(keys) if keys else base


def build_event(o: Outcome, now: float) -> AuditEvent:
    """The audit event for one outcome (never a token, never a payload)."""
    detail: dict[str, Any] = {"host": o.host, "port": o.port, "mode": o.mode}
    if o.address:
        detail["address"] = o.address
    if o.method:
        detail["method"] = o.method
    if o.path:
        detail["path"] = strip_query(o.path)
    detail.update(o.extra)
    return AuditEvent(
        actor=o.actor or "anonymous",
        lane=LANE,
        action=o.action,
        target=f"{o.host}:{o.port}" if o.host else "",
        decision=o.decision,
        reason=o.reason,
        request_id=o.request_id,
        status=o.status,
        latency_ms=round(max(0.0, now - o.started) * 1000, 3) if o.started else 0.0,
        bytes_in=o.bytes_in,
        bytes_out=o.bytes_out,
        detail=detail,
    )
