"""The one way registry, config and the gateway's admin routes write an audit record.

Keyword-only arguments, so no two call sites can swap `actor` and `action` again. `status`
is the outcome number the caller answered (200, 201, 204 for a change; for a refusal the
number its `Outcome` gives the raised domain error, see `vivified.registry.errors`):
registry code stores it but never decides it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from vivified.registry.audit.writer import AuditEvent, AuditWriter, since
from vivified.registry.errors import DomainError


async def record_action(
    writer: AuditWriter,
    *,
    lane: str,
    action: str,
    actor: str,
    target: str,
    decision: str,
    reason: str,
    request_id: str,
    status: int,
    started: float | None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record one decision; its latency runs from `started` (a `time.perf_counter()`
    reading), or is left at 0 for `None`."""
    await writer.record(
        AuditEvent(
            actor=actor,
            lane=lane,
            action=action,
            target=target,
            decision=decision,
            reason=reason,
            request_id=request_id,
            status=status,
            latency_ms=0.0 if started is None else since(started),
            detail=dict(detail or {}),
        )
    )


@asynccontextmanager
async def refusals_recorded(
    writer: AuditWriter,
    outcome: Callable[[DomainError], int | None],
    *,
    lane: str,
    action: str,
    actor: str,
    target: str,
    request_id: str,
    started: float | None = None,
) -> AsyncIterator[None]:
    """Record a domain error raised inside the block as a denied action, then let it go on
    (the gateway answers it). `outcome` numbers the refusal; None leaves it unrecorded. The
    record names the error's `subject` when it has one, else `target`."""
    try:
        yield
    except DomainError as exc:
        status = outcome(exc)
        if status is not None:
            await record_action(
                writer,
                lane=lane,
                action=action,
                actor=actor,
                target=exc.subject or target,
                decision="deny",
                reason=exc.code,
                request_id=request_id,
                status=status,
                started=started,
            )
        raise
