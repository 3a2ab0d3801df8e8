"""The audit pages: filters, keyset paging, chain verification, PHI redaction."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from vivified.gateway.console.context import Ctx, page
from vivified.gateway.params import MAX_INT, invalid_query, query_text, query_time
from vivified.gateway.problems import Problem
from vivified.registry.audit.chain import verify_chain
from vivified.registry.audit.query import decode_cursor, query_audit
from vivified.registry.store.tables import AuditChainHead

PAGE_SIZE = 50
FILTERS = ("actor", "target", "lane", "action", "decision", "since", "until")


def phi_plugins(ctx: Ctx) -> frozenset[str]:
    """Plugins whose records an admin without `phi:read` sees only as ids and decisions."""
    return frozenset(
        pid
        for pid, view in ctx.core.snapshot.current.plugins.items()
        if "phi" in view.classification or "handles_phi" in view.traits
    )


def redact(ctx: Ctx, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without `phi:read`, records of PHI plugins lose their details (paths, bodies' sizes)."""
    if ctx.has("phi:read"):
        return [{**item, "redacted": False} for item in items]
    phi = phi_plugins(ctx)
    out = []
    for item in items:
        if item["target"] in phi or item["actor"] in phi:
            item = {**item, "detail": {}, "bytes_in": None, "bytes_out": None, "redacted": True}
        else:
            item = {**item, "redacted": False}
        out.append(item)
    return out


async def chain_state(ctx: Ctx) -> dict[str, Any]:
    async with ctx.core.sessions() as s:
        head = await s.get(AuditChainHead, 1)
    return {
        "last_id": head.last_id if head else 0,
        "last_hash": (head.last_hash if head else "")[:16],
        "writer_healthy": ctx.core.audit.healthy,
        "pending": ctx.core.audit.pending,
    }


async def recent_denials(ctx: Ctx, limit: int = 10) -> list[dict[str, Any]]:
    items, _ = await query_audit(ctx.core.sessions, decision="deny", limit=limit)
    return redact(ctx, items)


async def verify(ctx: Ctx) -> dict[str, Any]:
    """The same check as `GET /admin/audit/verify`."""
    await ctx.core.audit.flush()
    started = time.perf_counter()
    report = await verify_chain(ctx.core.sessions)
    return {
        "ok": report.ok,
        "checked": report.checked,
        "first_bad_id": report.first_bad_id,
        "problem": report.problem,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _cursor(ctx: Ctx) -> str | None:
    """The paging cursor, checked as `GET /admin/audit` checks it."""
    cursor = query_text(ctx.request, "cursor", 64)
    if cursor is None:
        return None
    try:
        last = decode_cursor(cursor)
    except ValueError:
        last = 0
    if not 1 <= last <= MAX_INT:
        raise invalid_query("cursor", "invalid_cursor", "a next_cursor value from a response")
    return cursor


async def _audit_view(ctx: Ctx, result: dict[str, Any] | None) -> Response:
    request = ctx.request
    filters = {name: query_text(request, name) or "" for name in FILTERS}
    try:
        items, next_cursor = await query_audit(
            ctx.core.sessions,
            actor=filters["actor"] or None,
            target=filters["target"] or None,
            lane=filters["lane"] or None,
            action=filters["action"] or None,
            decision=filters["decision"] or None,
            since=query_time(request, "since"),
            until=query_time(request, "until"),
            limit=PAGE_SIZE,
            cursor=_cursor(ctx),
        )
    except ValueError as exc:
        raise Problem(422, str(exc), code="bad_query") from exc
    kept = {k: v for k, v in filters.items() if v}
    next_url = "/console/audit?" + urlencode({**kept, "cursor": next_cursor}) if next_cursor else ""
    first_url = "/console/audit?" + urlencode(kept) if request.query_params.get("cursor") else ""
    return ctx.render(
        "audit.html",
        items=redact(ctx, items),
        filters=filters,
        next_url=next_url,
        first_url=first_url,
        chain=await chain_state(ctx),
        result=result,
    )


@page("audit:read")
async def audit_page(ctx: Ctx) -> Response:
    """Filtered audit records, newest first, a page at a time."""
    return await _audit_view(ctx, None)


@page("audit:read")
async def verify_chain_action(ctx: Ctx) -> Response:
    """Verify the chain; htmx swaps in the result, a plain form gets the audit page with it."""
    result = await verify(ctx)
    if ctx.request.headers.get("hx-request") == "true":
        return ctx.render("chain_result.html", result=result)
    return await _audit_view(ctx, result)
