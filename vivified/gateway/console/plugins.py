"""Plugin pages: the filterable, sortable table and one plugin's record with its actions."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Text, and_, case, cast, func, or_, text
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from starlette.responses import RedirectResponse, Response

from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.console.plugin_extras import plugin_extras
from vivified.gateway.middleware import request_id
from vivified.gateway.params import PLUGIN_ID, path_plugin_id, query_text
from vivified.gateway.plugins import _problem as api_problem
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.manifest.cycles import cycle_messages
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


# -- the table: filters, sort, counts and keyset paging in SQL, one page of rows rendered -----

PAGE_SIZE = 100
_TRAITS = ("$.traits", "'traits'")  # (SQLite JSON path, PostgreSQL -> key path)
_CLASSES = ("$.security.data_classification", "'security' -> 'data_classification'")
_RISK_RANK = case(*((col(Plugin.risk) == v, n) for n, v in enumerate(RISK_ORDER)), else_=9)
_SORT_SQL: dict[str, Any] = {
    "id": col(Plugin.id),
    "name": col(Plugin.name),
    "version": col(Plugin.version),
    "status": col(Plugin.status),
    "health": col(Plugin.health_state),
    "risk": _RISK_RANK,
}
_PENDING = func.coalesce(cast(col(Plugin.pending), Text), "null") != "null"


def waiting_sql() -> Any:
    """Plugins waiting for an admin: new ones and widening re-registrations."""
    return or_(col(Plugin.status) == "registered", _PENDING)


def _has(dialect: str, paths: tuple[str, str], name: str) -> Any:
    """The manifest's list at `paths` holds the value of parameter `name`."""
    # fixed paths and parameter names only: the value is always a bound parameter
    if dialect == "postgresql":  # json, not jsonb: no conversion of every whole manifest
        sql = (
            "EXISTS (SELECT 1 FROM json_array_elements_text(CASE WHEN json_typeof("
            "plugins.manifest -> {p}) = 'array' THEN plugins.manifest -> {p} END) t"
            " WHERE t = :{n})"
        )
        return text(sql.format(p=paths[1], n=name))
    sql = "EXISTS (SELECT 1 FROM json_each(plugins.manifest, '{p}') WHERE value = :{n})"
    return text(sql.format(p=paths[0], n=name))


def _declared(ctx: Ctx) -> tuple[list[str], list[str]]:
    """Every trait and data classification a plugin declares, from the in-memory snapshot
    (it holds every plugin): no query, no manifest parsed per request."""
    traits: set[str] = set()
    classes: set[str] = set()
    for view in ctx.core.snapshot.current.plugins.values():
        traits |= view.traits
        classes |= view.classification
    return sorted(traits), sorted(classes)


def _where(dialect: str, filters: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
    """SQL conditions for the table's filters and their parameters."""
    plain = {"status": Plugin.status, "health": Plugin.health_state, "risk": Plugin.risk}
    conds: list[Any] = []
    params: dict[str, str] = {}
    for name, value in filters.items():
        if not value:
            continue
        if name == "trait":
            conds.append(_has(dialect, _TRAITS, "f_trait"))
            params["f_trait"] = value
        elif name == "classification":
            conds.append(_has(dialect, _CLASSES, "f_class"))
            params["f_class"] = value
        else:
            conds.append(col(plain.get(name, Plugin.version)) == value)
    return conds, params


def encode_after(key: Any, pid: str) -> str:
    raw = json.dumps([key, pid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_after(cursor: str, sort: str) -> tuple[Any, str]:
    """The (sort key, id) a page starts after; ConsoleError 400 for anything else."""
    try:
        key, pid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ConsoleError(400, "invalid_cursor", "use the table's own page links") from exc
    kind = int if sort == "risk" else str
    if not (type(key) is kind and isinstance(pid, str) and PLUGIN_ID.fullmatch(pid)):
        raise ConsoleError(400, "invalid_cursor", "use the table's own page links")
    return key, pid


def _after(sort: str, descending: bool, key: Any, pid: str) -> Any:
    """Keyset condition: rows after (key, pid) in the table's order."""
    expr, ids = _SORT_SQL[sort], col(Plugin.id)
    if sort == "id":
        return ids < pid if descending else ids > pid
    if descending:
        return or_(expr < key, and_(expr == key, ids < pid))
    return or_(expr > key, and_(expr == key, ids > pid))


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _row(r: Any) -> dict[str, Any]:
    traits = _strings(r.traits)
    return {
        "id": r.id,
        "name": r.name,
        "version": r.version,
        "status": r.status,
        "health": r.health_state,
        "risk": r.risk,
        "traits": traits,
        "classifications": _strings(r.classes),
        "badges": [b for b in BADGES if b in traits],
        "pending": bool(r.pending),
    }


async def plugin_table(
    ctx: Ctx, filters: dict[str, str], sort: str, descending: bool, after: str | None
) -> dict[str, Any]:
    """One page of the table and what its header needs, in three bounded queries."""
    manifest = col(Plugin.manifest)
    sort_expr, ids = _SORT_SQL[sort], col(Plugin.id)
    traits, classes = _declared(ctx)
    async with ctx.core.sessions() as s:
        dialect = s.get_bind().dialect.name
        conds, params = _where(dialect, filters)
        groups = select(col(Plugin.status), col(Plugin.health_state), func.count())
        grouped = (await s.execute(groups.group_by(Plugin.status, Plugin.health_state))).all()
        total = sum(n for _, _, n in grouped)
        matched = total
        if conds:
            counted = select(func.count()).select_from(Plugin).where(*conds)
            matched = (await s.execute(counted, params)).scalar_one()
        stmt = sa_select(  # sqlmodel's select takes at most four columns
            ids,
            col(Plugin.name),
            col(Plugin.version),
            col(Plugin.status),
            col(Plugin.health_state),
            col(Plugin.risk),
            _PENDING.label("pending"),
            manifest["traits"].label("traits"),
            manifest[("security", "data_classification")].label("classes"),
            sort_expr.label("sort_key"),
        ).where(*conds)
        if after is not None:
            stmt = stmt.where(_after(sort, descending, *decode_after(after, sort)))
        order = (sort_expr.desc(), ids.desc()) if descending else (sort_expr, ids)
        page_rows = (await s.execute(stmt.order_by(*order).limit(PAGE_SIZE + 1), params)).all()
    more = len(page_rows) > PAGE_SIZE
    page_rows = page_rows[:PAGE_SIZE]
    last = page_rows[-1] if page_rows else None
    return {
        "rows": [_row(r) for r in page_rows],
        "total": total,
        "matched": matched,
        "next": encode_after(last.sort_key, last.id) if more and last is not None else None,
        "options": {
            "status": sorted({g[0] for g in grouped} | {"registered", "active", "disabled"}),
            "health": sorted({g[1] for g in grouped}),
            "risk": list(RISK_ORDER),
            "trait": traits,
            "classification": classes,
        },
    }


@page("plugins:manage")
async def plugins_page(ctx: Ctx) -> Response:
    """Plugins filtered and sorted by the query string, a page at a time."""
    request = ctx.request
    filters = {name: query_text(request, name, 64) or "" for name in FILTERS}
    sort = request.query_params.get("sort", "id")
    sort = sort if sort in SORTS else "id"
    descending = request.query_params.get("order") == "desc"
    after = query_text(request, "after", 200)
    table = await plugin_table(ctx, filters, sort, descending, after)
    gone = query_text(request, "unregistered", 63)
    kept = {k: v for k, v in filters.items() if v}
    order = "desc" if descending else "asc"
    sort_links = {
        name: "?"
        + urlencode(
            {**kept, "sort": name, "order": "desc" if name == sort and not descending else "asc"}
        )
        for name in SORTS
    }
    here = {**kept, "sort": sort, "order": order}
    nxt = table["next"]
    return ctx.render(
        "plugins.html",
        rows=table["rows"],
        total=table["total"],
        matched=table["matched"],
        next_url="?" + urlencode({**here, "after": nxt}) if nxt else "",
        first_url="?" + urlencode(here) if after else "",
        page_size=PAGE_SIZE,
        filters=filters,
        options=table["options"],
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
        cycles=cycle_messages(ctx.core.snapshot.current.plugins, record["id"]),
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
