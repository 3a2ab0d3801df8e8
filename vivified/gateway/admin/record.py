"""One audit record per admin action, from any admin route."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from vivified.gateway import auth
from vivified.gateway.middleware import request_id
from vivified.registry.audit.writer import AuditEvent


async def record_admin_action(
    request: Request,
    actor: str,
    action: str,
    target: str,
    status: int,
    *,
    reason: str = "changed",
    detail: dict[str, Any] | None = None,
) -> None:
    await auth.core_of(request).audit.record(
        AuditEvent(
            actor=actor,
            lane="admin",
            action=action,
            target=target,
            decision="allow",
            reason=reason,
            request_id=request_id(request),
            status=status,
            detail=detail or {},
        )
    )
