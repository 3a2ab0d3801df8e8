"""What the plugin page shows beyond its record: the egress allowlist (and its editor), the
plugin's grants, its health history and its recent audit records, each only to an admin
holding the scope the matching API route needs."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from vivified.config.documents import ConfigError
from vivified.gateway.console.audit import redact
from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.console.egress import expected_version, lines, stale_message
from vivified.gateway.middleware import request_id
from vivified.gateway.params import path_plugin_id
from vivified.gateway.problems import Problem, status_of
from vivified.registry.audit.query import query_audit
from vivified.registry.store import grants
from vivified.registry.store.tables import Plugin

RECENT = 10
MAX_COMMENT = 500


async def plugin_extras(ctx: Ctx, pid: str) -> dict[str, Any]:
    """The extra sections of plugin `pid`'s page (empty for scopes the admin lacks)."""
    out: dict[str, Any] = {"allowlist": None, "grants": None, "audit_items": None}
    if ctx.has("egress:manage"):
        got = await ctx.core.config.get_allowlist(pid)
        out["allowlist"] = {**got.value, "version": got.version}
    if ctx.has("grants:manage"):
        given = await grants.list_grants(ctx.core.sessions, caller=pid)
        taken = await grants.list_grants(ctx.core.sessions, target=pid)
        out["grants"] = {"as_caller": given, "as_target": taken}
    async with ctx.core.sessions() as s:
        row = await s.get(Plugin, pid)
    detail = (row.health_detail or {}) if row is not None else {}
    out["health"] = {
        "last_heartbeat": detail.get("last_heartbeat"),
        "history": list(detail.get("history", []))[-RECENT:][::-1],
        "metrics": detail.get("metrics", {}),
    }
    if ctx.has("audit:read"):
        items, _ = await query_audit(ctx.core.sessions, target=pid, limit=RECENT)
        health, _ = await query_audit(ctx.core.sessions, target=pid, lane="health", limit=RECENT)
        out["audit_items"] = redact(ctx, items)
        out["health_items"] = redact(ctx, health)
    return out


@page("egress:manage")
async def save_allowlist(ctx: Ctx) -> Response:
    """Write the plugin's allowlist as `PUT /admin/plugins/{id}/allowed-domains` does."""
    from vivified.gateway.console.plugins import render_plugin  # the page that shows it

    pid = path_plugin_id(ctx.request)
    async with ctx.core.sessions() as s:
        if await s.get(Plugin, pid) is None:
            raise ConsoleError(404, "not_found", f"no plugin {pid!r}")
    form = ctx.form
    body = {"domains": lines(form.get("domains", "")), "mode": form.get("mode", "")}
    kept = {**body, "version": form.get("version", "")}
    try:
        await ctx.core.config.put_allowlist(
            pid,
            body,
            expected=expected_version(form),
            actor=ctx.principal.actor,
            comment=form.get("comment", "").strip()[:MAX_COMMENT],
            request_id=request_id(ctx.request),
        )
    except ConfigError as exc:
        if exc.code == "stale_version":
            stale = stale_message("this allowlist")
            return await render_plugin(ctx, 412, allowlist_form=kept, allowlist_stale=stale)
        if exc.errors:
            errors = [dict(e) for e in exc.errors]
            return await render_plugin(
                ctx, status_of(exc), allowlist_form=kept, allowlist_errors=errors
            )
        raise Problem.of(exc) from exc
    return RedirectResponse(f"/console/plugins/{pid}?done=allowlist#h-allowlist", status_code=303)
