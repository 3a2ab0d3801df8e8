"""Audit records of admin actions, from any admin route: `record_action` on the admin lane,
bound to the request (its core's audit writer and its request id)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.requests import Request

from vivified.gateway import auth
from vivified.gateway.middleware import request_id
from vivified.gateway.problems import status_of
from vivified.registry.audit.records import record_action, refusals_recorded
from vivified.registry.errors import DomainError


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
    """An allowed admin action that changed something (answered with `status`)."""
    await record_action(
        auth.core_of(request).audit,
        lane="admin",
        action=action,
        actor=actor,
        target=target,
        decision="allow",
        reason=reason,
        request_id=request_id(request),
        status=status,
        started=None,
        detail=detail,
    )


def _forbidden(exc: DomainError) -> int | None:
    status = status_of(exc)
    return status if status == 403 else None


def refusals_audited(
    request: Request, *, actor: str, action: str, target: str
) -> AbstractAsyncContextManager[None]:
    """Around a registry call: a domain error the gateway answers with 403 (a refusal of
    power, not a typo) is also audited as a denied admin action, naming the admin acted upon
    when the error knows it. The error goes on to the gateway's handler either way."""
    return refusals_recorded(
        auth.core_of(request).audit,
        _forbidden,
        lane="admin",
        action=action,
        actor=actor,
        target=target,
        request_id=request_id(request),
    )
