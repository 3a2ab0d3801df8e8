"""Plugin pages: the filterable, sortable table and one plugin's record with its actions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlmodel import col, select
from starlette.responses import RedirectResponse, Response

from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.console.plugin_extras import plugin_extras
from vivified.gateway.middleware import request_id
from vivified.gateway.params import PLUGIN_ID, path_plugin_id, query_text
from vivified.gateway.plugins import _problem as api_problem
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.plugins.record import plugin_record
from vivified.registry.plugins.reregistration import RegistryError
from vivified.registry.store.tables import Plugin

RISK_ORDER = ("low", "medium", "high", "critical")
BADGES = ("handles_phi", "handles_pii", "external_service")
SORTS = ("id", "name", "version", "status", "health", "risk")
FILTERS = ("status", "health", "risk", "trait", "classification", "version")
MAX_REASON = 500
# action → (button verb, what it does, whether a PHI plugin needs a written reason)
ACTIONS: dict[str, tuple[str, str, bool]] = {
    "approve": ("Approve", "approves its manifest and lets it serve on every lane", True),
    "enable": ("Enable", "lets it serve again on every lane", True),
    "disable": ("Disable", "stops its traffic and revokes its tokens at once", False),
    "unregister": ("Unregister", "removes it, its grants and its tokens for good", False),
}


def traits_of(record: dict[str, Any]) -> list[str]:
    traits = record["manifest"].get("traits", [])
    return [t for t in traits if isinstance(t, str)]


def classes_of(record: dict[str, Any]) -> list[str]:
    security = record["manifest"].get("security", {})
    found = security.get("data_classification", []) if isinstance(security, dict) else []
    return [c for c in found if isinstance(c, str)]


def row_view(record: dict[str, Any]) -> dict[str, Any]:
    traits = traits_of(record)
    return {
        "id": record["id"],
        "name": record["name"],
        "version": record["version"],
        "status": record["status"],
        "health": record["health"]["state"],
        "risk": record["risk"]["level"],
        "traits": traits,
        "classifications": classes_of(record),
        "badges": [b for b in BADGES if b in traits],
        "pending": bool(record["pending"]),
    }


async def all_plugins(ctx: Ctx) -> list[dict[str, Any]]:
    """Every plugin's public record, as `GET /plugins` reads them."""
    async with ctx.core.sessions() as s:
        rows = (await s.execute(select(Plugin).order_by(col(Plugin.id)))).scalars().all()
    return [row_view(plugin_record(r)) for r in rows]


def _matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    for name, value in filters.items():
        if not value:
            continue
        if name in {"trait", "classification"}:
            ok = value in row["traits" if name == "trait" else "classifications"]
        else:
            ok = row[name] == value
        if not ok:
            return False
    return True


def _sort_key(name: str) -> Any:
    if name == "risk":
        return lambda r: (RISK_ORDER.index(r["risk"]) if r["risk"] in RISK_ORDER else 9, r["id"])
    return lambda r: (str(r[name]), r["id"])


@page("plugins:manage")
async def plugins_page(ctx: Ctx) -> Response:
    """Plugins filtered and sorted by the query string."""
    request = ctx.request
    filters = {name: query_text(request, name, 64) or "" for name in FILTERS}
    sort = request.query_params.get("sort", "id")
    sort = sort if sort in SORTS else "id"
    descending = request.query_params.get("order") == "desc"
    rows = await all_plugins(ctx)
    gone = query_text(request, "unregistered", 63)
    shown = sorted(
        (r for r in rows if _matches(r, filters)), key=_sort_key(sort), reverse=descending
    )
    kept = {k: v for k, v in filters.items() if v}
    sort_links = {
        name: "?"
        + urlencode(
            {**kept, "sort": name, "order": "desc" if name == sort and not descending else "asc"}
        )
        for name in SORTS
    }
    options = {
        "status": sorted({r["status"] for r in rows} | {"registered", "active", "disabled"}),
        "health": sorted({r["health"] for r in rows}),
        "risk": list(RISK_ORDER),
        "trait": sorted({t for r in rows for t in r["traits"]}),
        "classification": sorted({c for r in rows for c in r["classifications"]}),
    }
    return ctx.render(
        "plugins.html",
        rows=shown,
        total=len(rows),
        filters=filters,
        options=options,
        sort=sort,
        descending=descending,
        sort_links=sort_links,
        unregistered=gone if gone and PLUGIN_ID.fullmatch(gone) else "",
    )


async def _record(ctx: Ctx) -> dict[str, Any]:
    pid = path_plugin_id(ctx.request)
    async with ctx.core.sessions() as s:
        row = await s.get(Plugin, pid)
    if row is None:
        raise ConsoleError(404, "not_found", f"no plugin {pid!r}")
    return plugin_record(row)


def available(record: dict[str, Any]) -> list[str]:
    """The lifecycle actions that make sense for the plugin now."""
    status = record["status"]
    out = []
    if status == "registered" or (status == "active" and record["pending"]):
        out.append("approve")
    if status == "disabled":
        out.append("enable")
    if status == "active":
        out.append("disable")
    out.append("unregister")
    return out


@page("plugins:manage")
async def plugin_page(ctx: Ctx) -> Response:
    """One plugin: its manifest, health, risk, a pending widening and its actions."""
    return await render_plugin(ctx)


async def render_plugin(ctx: Ctx, status: int = 200, **kw: Any) -> Response:
    """The plugin page; `kw` carries a refused allowlist edit back to its form."""
    record = await _record(ctx)
    done = ctx.request.query_params.get("done", "")
    done_verbs = {a: v[0] for a, v in ACTIONS.items()} | {"allowlist": "Save allowlist"}
    return ctx.render(
        "plugin.html",
        status=status,
        p=record,
        view=row_view(record),
        actions=[(a, ACTIONS[a][0]) for a in available(record)],
        done=done_verbs.get(done, ""),
        **(await plugin_extras(ctx, record["id"])),
        **kw,
    )


def _action(ctx: Ctx) -> str:
    action = str(ctx.request.path_params.get("action", ""))
    if action not in ACTIONS:
        raise ConsoleError(404, "not_found", "no such plugin action")
    return action


def _needs_reason(record: dict[str, Any], action: str) -> bool:
    return ACTIONS[action][2] and "handles_phi" in traits_of(record)


@page("plugins:manage")
async def confirm_page(ctx: Ctx) -> Response:
    """The confirmation page that names the plugin (and asks PHI approvals for a reason)."""
    action = _action(ctx)
    record = await _record(ctx)
    return _confirm(ctx, record, action)


def _confirm(ctx: Ctx, record: dict[str, Any], action: str, error: str = "") -> Response:
    verb, effect, _ = ACTIONS[action]
    return ctx.render(
        "confirm.html",
        status=422 if error else 200,
        p=record,
        action=action,
        verb=verb,
        effect=effect,
        needs_reason=_needs_reason(record, action),
        error=error,
    )


@page("plugins:manage")
async def perform(ctx: Ctx) -> Response:
    """Carry out a confirmed action through the same registrar call as the API route."""
    action = _action(ctx)
    record = await _record(ctx)
    pid, actor, rid = record["id"], ctx.principal.actor, request_id(ctx.request)
    reason = ctx.form.get("reason", "").strip()
    if _needs_reason(record, action):
        if not reason:
            return _confirm(ctx, record, action, "Give the reason for this PHI plugin.")
        if len(reason) > MAX_REASON:
            return _confirm(ctx, record, action, f"Keep the reason under {MAX_REASON} characters.")
    registrar = ctx.core.registrar
    try:
        if action in {"approve", "enable"}:
            await registrar.enable(pid, actor, rid)
        elif action == "disable":
            await registrar.disable(pid, actor, rid)
        else:
            await registrar.unregister(pid, actor, rid)
    except RegistryError as exc:
        raise api_problem(exc) from exc  # the API's own mapping of registry errors
    if _needs_reason(record, action):
        # The registrar's own record says what happened; this one, with the same request id,
        # says why (the written reason of a PHI approval).
        await ctx.core.audit.record(
            AuditEvent(
                actor=actor,
                lane="admin",
                action="console.phi_reason",
                target=pid,
                decision="allow",
                reason="reason_given",
                request_id=rid,
                status=200,
                detail={"action": action, "reason": reason},
            )
        )
    if action == "unregister":
        return RedirectResponse(f"/console/plugins?unregistered={pid}", status_code=303)
    return RedirectResponse(f"/console/plugins/{pid}?done={action}", status_code=303)
