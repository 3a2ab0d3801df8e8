"""Audit export: the records the audit page's filters select, every page of them, streamed
as JSON Lines or CSV (keyset pages of the same query; PHI details redacted as on the page)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from vivified.gateway.admin.record import record_admin_action
from vivified.gateway.console.audit import FILTERS, redact
from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.params import query_text, query_time
from vivified.registry.audit.query import MAX_LIMIT, query_audit

FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
COLUMNS = (
    "id",
    "time",
    "actor",
    "lane",
    "action",
    "target",
    "decision",
    "reason",
    "status",
    "request_id",
    "detail",
)


def _filters(ctx: Ctx) -> dict[str, Any]:
    request = ctx.request
    text = {n: query_text(request, n) or None for n in FILTERS if n not in {"since", "until"}}
    decision = text.get("decision")
    if decision is not None and decision not in {"allow", "deny", "report"}:
        raise ConsoleError(422, "bad_query", "decision must be allow, deny or report")
    return {
        **text,
        "since": query_time(request, "since"),
        "until": query_time(request, "until"),
    }


async def _records(ctx: Ctx, filters: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        items, cursor = await query_audit(
            ctx.core.sessions, **filters, limit=MAX_LIMIT, cursor=cursor
        )
        for item in redact(ctx, items):
            yield item
        if cursor is None:
            return


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def _cell(item: dict[str, Any], name: str) -> Any:
    value = item.get(name)
    if name == "detail":
        return json.dumps(value or {}, separators=(",", ":"), sort_keys=True)
    return "" if value is None else value


async def _lines(ctx: Ctx, filters: dict[str, Any], fmt: str) -> AsyncIterator[str]:
    if fmt == "csv":
        yield _csv_line(list(COLUMNS))
    async for item in _records(ctx, filters):
        if fmt == "csv":
            yield _csv_line([_cell(item, c) for c in COLUMNS])
        else:
            yield json.dumps(item, separators=(",", ":"), sort_keys=True) + "\n"


@page("audit:read")
async def export(ctx: Ctx) -> Response:
    """Download every record the filters select (`format`: jsonl or csv)."""
    fmt = ctx.request.query_params.get("format", "jsonl")
    if fmt not in FORMATS:
        raise ConsoleError(422, "bad_query", "format is jsonl or csv")
    filters = _filters(ctx)
    await ctx.core.audit.flush()
    await record_admin_action(
        ctx.request,
        ctx.principal.actor,
        "audit_export",
        "audit",
        200,
        reason="exported",
        detail={"format": fmt, **{k: v for k, v in filters.items() if v is not None}},
    )
    name = time.strftime("audit-%Y%m%dT%H%M%SZ", time.gmtime()) + f".{fmt}"
    return StreamingResponse(
        _lines(ctx, filters, fmt),
        media_type=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
