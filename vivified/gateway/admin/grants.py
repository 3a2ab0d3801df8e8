"""Admin routes of the operator lane: grants, contract choices, and the policy explainer."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.admin.record import record_admin_action
from vivified.gateway.bodies import json_object, read_json
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.operator.lane import judged
from vivified.gateway.params import MAX_TEXT, path_contract, path_record_id, query_text
from vivified.gateway.problems import Problem, not_found, status_of
from vivified.registry.store import grants

ADMIN_BODY_CAP = 64 * 1024
METHOD = re.compile(r"^[A-Z]{1,16}$")
PATTERN = re.compile(r"^/api(/(\*\*|\*|[A-Za-z0-9._~!$&'()+,;=:@%-]+))*/?$")
MAX_ITEMS = 64
REQUIRED = ("caller", "target", "path")  # query parameters of the explainer


def _problem(path: str, code: str, message: str) -> dict[str, str]:
    return {"path": path, "code": code, "message": message}


def _string_list(
    body: dict[str, Any], name: str, rule: re.Pattern[str], errors: list[dict[str, str]]
) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        errors.append(_problem(f"/{name}", "invalid_type", f"{name} must be a list (≤ 64)"))
        return []
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not rule.match(item if name != "methods" else item.upper()):
            errors.append(_problem(f"/{name}/{i}", f"invalid_{name[:-1]}", f"bad {name[:-1]}"))
        else:
            out.append(item.upper() if name == "methods" else item)
    return out


async def create_grant(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "grants:manage")
    body = json_object(await read_json(request, ADMIN_BODY_CAP))
    errors: list[dict[str, str]] = []
    for key in body:
        if key not in {"caller", "target", "methods", "paths"}:
            errors.append(
                _problem(f"/{key}", "unknown_field", "known: caller, target, methods, paths")
            )
    plugins = (await core.snapshot.confirm()).plugins  # a plugin registered elsewhere just now
    for name in ("caller", "target"):
        value = body.get(name)
        if not isinstance(value, str) or value not in plugins:
            errors.append(
                _problem(f"/{name}", "unknown_plugin", f"{name} must be a registered plugin id")
            )
    methods = _string_list(body, "methods", METHOD, errors)
    paths = _string_list(body, "paths", PATTERN, errors)
    if errors:
        raise Problem(422, "the grant is invalid", code="invalid_grant", errors=errors)
    row = await grants.create_grant(
        core.sessions,
        caller=body["caller"],
        target=body["target"],
        methods=methods,
        paths=paths,
        created_by=principal.actor,
    )
    await core.snapshot.changed("grants")
    await record_admin_action(
        request,
        principal.actor,
        "grant_create",
        row["target"],
        201,
        detail={"grant": row["id"], "caller": row["caller"]},
    )
    return JSONResponse(row, status_code=201)


async def list_grants(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "grants:manage")
    items = await grants.list_grants(
        core.sessions, caller=query_text(request, "caller"), target=query_text(request, "target")
    )
    return JSONResponse({"items": items})


async def delete_grant(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "grants:manage")
    grant_id = path_record_id(request, "grant_id", "grant")
    if not await grants.delete_grant(core.sessions, grant_id):
        raise not_found("no such grant")
    await core.snapshot.changed("grants")
    await record_admin_action(
        request, principal.actor, "grant_delete", grant_id, 204, detail={"grant": grant_id}
    )
    return Response(status_code=204)


async def choose_contract(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "plugins:manage")
    contract = path_contract(request)
    body = json_object(await read_json(request, ADMIN_BODY_CAP))
    plugin = body.get("plugin")
    plugins = (await core.snapshot.confirm()).plugins  # a plugin registered elsewhere just now
    view = plugins.get(plugin) if isinstance(plugin, str) else None
    if set(body) != {"plugin"} or view is None or contract not in view.contracts:
        raise Problem(
            422,
            f"plugin must be a registered plugin that declares {contract}",
            code="invalid_choice",
            errors=[_problem("/plugin", "invalid_choice", f"name a plugin providing {contract}")],
        )
    await grants.set_contract_choice(core.sessions, contract, view.id)
    await core.snapshot.changed("grants")
    await record_admin_action(
        request, principal.actor, "contract_choose", contract, 200, detail={"plugin": view.id}
    )
    return JSONResponse({"contract": contract, "plugin": view.id})


async def explain(request: Request) -> Response:
    """What the operator lane would do for caller → target, and why (same code path)."""
    core = auth.core_of(request)
    await auth.admin(request, "grants:manage")
    given = {k: query_text(request, k, 2048 if k == "path" else MAX_TEXT) for k in REQUIRED}
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise Problem(
            422,
            f"missing query parameters: {', '.join(missing)}",
            code="invalid_query",
            errors=[{"path": f"?{k}", "code": "missing", "message": "required"} for k in missing],
        )
    caller, target_id, raw_path = (str(given[k]) for k in REQUIRED)
    method = query_text(request, "method", 16)
    method = (method or "GET").upper()
    path = raw_path if raw_path.startswith("/api/") else "/api/" + raw_path.lstrip("/")
    answer: dict[str, Any] = {
        "caller": caller,
        "target": target_id,
        "method": method,
        "path": path,
    }
    _snap, verdict = await judged(core, caller, target_id, method, path)  # as the lane would
    if isinstance(verdict, LaneError):
        answer.update(
            decision="deny", status=status_of(verdict), reason=verdict.code, detail=verdict.message
        )
        return JSONResponse(answer)
    target, route, reason = verdict
    answer.update(
        decision="allow",
        status=200,
        reason=reason,
        route=route,
        plugin=target.id,
        circuit=core.circuits.state(target.id),
    )
    return JSONResponse(answer)


ROUTES = [
    Route("/admin/grants", create_grant, methods=["POST"]),
    Route("/admin/grants", list_grants, methods=["GET"]),
    Route("/admin/grants/{grant_id}", delete_grant, methods=["DELETE"]),
    Route("/admin/contracts/{contract}", choose_contract, methods=["PUT"]),
    Route("/admin/policy/explain", explain, methods=["GET"]),
]
