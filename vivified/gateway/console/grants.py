"""Grants: list, create, delete; contract choices (`PUT /admin/contracts/{Contract}`'s twin)
and the policy explainer (the same `judged` as `GET /admin/policy/explain`)."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from vivified.gateway.admin.grants import METHOD, PATTERN, _string_list
from vivified.gateway.admin.record import record_admin_action
from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.operator.lane import judged
from vivified.gateway.params import CONTRACT, RECORD_ID
from vivified.gateway.problems import status_of
from vivified.registry.store import grants

SCOPE = "grants:manage"
CHOOSE_SCOPE = "plugins:manage"  # what `PUT /admin/contracts/{Contract}` needs


def _contracts(ctx: Ctx) -> list[dict[str, Any]]:
    """Every contract some plugin provides, its providers and the admin's choice."""
    snap = ctx.core.snapshot.current
    providers: dict[str, list[str]] = {}
    for view in snap.plugins.values():
        for contract in view.contracts:
            providers.setdefault(contract, []).append(view.id)
    return [
        {"name": c, "providers": sorted(p), "chosen": snap.contract_choices.get(c, "")}
        for c, p in sorted(providers.items())
    ]


async def _page(ctx: Ctx, status: int = 200, **kw: Any) -> Response:
    defaults: dict[str, Any] = {
        "errors": [],
        "form": {},
        "explained": None,
        "explain_form": {},
        "notice": "",
    }
    return ctx.render(
        "grants.html",
        status=status,
        items=await grants.list_grants(ctx.core.sessions),
        plugins=sorted(ctx.core.snapshot.current.plugins),
        contracts=_contracts(ctx),
        may_choose=ctx.has(CHOOSE_SCOPE),
        **(defaults | kw),
    )


NOTICES = {"created": "Grant created.", "deleted": "Grant deleted.", "chosen": "Choice saved."}


@page(SCOPE)
async def grants_page(ctx: Ctx) -> Response:
    """Grants, the create form, contract choices and the explainer."""
    done = ctx.request.query_params.get("done", "")
    return await _page(ctx, notice=NOTICES.get(done, ""))


@page(SCOPE)
async def create(ctx: Ctx) -> Response:
    """Create a grant with the API's validation, then refresh the snapshot and audit it."""
    form = ctx.form
    plugins = (await ctx.core.snapshot.confirm()).plugins  # registered elsewhere just now
    errors: list[dict[str, str]] = []
    caller, target = form.get("caller", ""), form.get("target", "")
    for name, value in (("caller", caller), ("target", target)):
        if value not in plugins:
            errors.append(
                {"path": f"/{name}", "code": "unknown_plugin", "message": f"choose a {name}"}
            )
    body = {
        "methods": [m for m in form.get("methods", "").replace(",", " ").split() if m],
        "paths": [p for p in form.get("paths", "").split() if p],
    }
    methods = _string_list(body, "methods", METHOD, errors)
    paths = _string_list(body, "paths", PATTERN, errors)
    if errors:
        return await _page(ctx, 422, errors=errors, form=form)
    row = await grants.create_grant(
        ctx.core.sessions,
        caller=caller,
        target=target,
        methods=methods,
        paths=paths,
        created_by=ctx.principal.actor,
    )
    await ctx.core.snapshot.changed("grants")
    await record_admin_action(
        ctx.request,
        ctx.principal.actor,
        "grant_create",
        row["target"],
        201,
        detail={"grant": row["id"], "caller": row["caller"]},
    )
    return RedirectResponse("/console/grants?done=created", status_code=303)


@page(SCOPE)
async def delete(ctx: Ctx) -> Response:
    """Delete a grant (as `DELETE /admin/grants/{id}`)."""
    grant_id = str(ctx.request.path_params.get("grant_id", ""))
    if not RECORD_ID.fullmatch(grant_id):
        raise ConsoleError(404, "not_found", "no such grant")
    if not await grants.delete_grant(ctx.core.sessions, grant_id):
        raise ConsoleError(404, "not_found", "no such grant")
    await ctx.core.snapshot.changed("grants")
    await record_admin_action(
        ctx.request, ctx.principal.actor, "grant_delete", grant_id, 204, detail={"grant": grant_id}
    )
    return RedirectResponse("/console/grants?done=deleted", status_code=303)


@page(SCOPE)
async def choose(ctx: Ctx) -> Response:
    """Choose the plugin that serves a contract (needs plugins:manage, as the API does)."""
    if not ctx.has(CHOOSE_SCOPE):
        raise ConsoleError(403, "missing_scope", f"choosing needs the {CHOOSE_SCOPE} scope")
    contract = str(ctx.request.path_params.get("contract", ""))
    plugin = ctx.form.get("plugin", "")
    view = (await ctx.core.snapshot.confirm()).plugins.get(plugin)  # as the API does
    if not CONTRACT.fullmatch(contract) or view is None or contract not in view.contracts:
        error = {
            "path": "/plugin",
            "code": "invalid_choice",
            "message": f"name a plugin providing {contract}",
        }
        return await _page(ctx, 422, errors=[error])
    await grants.set_contract_choice(ctx.core.sessions, contract, view.id)
    await ctx.core.snapshot.changed("grants")
    await record_admin_action(
        ctx.request,
        ctx.principal.actor,
        "contract_choose",
        contract,
        200,
        detail={"plugin": view.id},
    )
    return RedirectResponse("/console/grants?done=chosen", status_code=303)


@page(SCOPE)
async def explain(ctx: Ctx) -> Response:
    """What the operator lane would do for caller → target, and why."""
    q = ctx.request.query_params
    given = {k: q.get(k, "")[:2048] for k in ("caller", "target", "path", "method")}
    missing = [k for k in ("caller", "target", "path") if not given[k]]
    if missing:
        error = {"path": "?", "code": "missing", "message": f"give {', '.join(missing)}"}
        return await _page(ctx, 422, errors=[error], explain_form=given)
    method = (given["method"] or "GET").upper()[:16]
    raw = given["path"]
    path = raw if raw.startswith("/api/") else "/api/" + raw.lstrip("/")
    answer: dict[str, Any] = {
        "caller": given["caller"],
        "target": given["target"],
        "method": method,
        "path": path,
    }
    _snap, verdict = await judged(ctx.core, given["caller"], given["target"], method, path)
    if isinstance(verdict, LaneError):
        answer.update(
            decision="deny", status=status_of(verdict), reason=verdict.code, detail=verdict.message
        )
    else:
        target, route, reason = verdict
        answer.update(decision="allow", status=200, reason=reason, route=route, plugin=target.id)
    return await _page(ctx, explained=answer, explain_form=given)
