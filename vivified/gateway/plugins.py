"""Plugin registration and lifecycle routes (`/plugins/...`)."""

from __future__ import annotations

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.bodies import read_json
from vivified.gateway.middleware import request_id
from vivified.gateway.params import path_plugin_id, query_text
from vivified.gateway.problems import Problem, not_found
from vivified.registry.manifest.schema import manifest_json_schema
from vivified.registry.plugins.record import plugin_record
from vivified.registry.store.tables import Plugin

# Domain errors reach the client through the app's handler (`Problem.of`, the one mapping);
# this name stays only for callers that still convert by hand (the console's plugin actions).
_problem = Problem.of


async def register(request: Request) -> Response:
    """Register a plugin (201) or re-register it (200); answers its token once."""
    core = auth.core_of(request)
    token = auth.bearer(request, required=False)
    body = await read_json(request, core.settings.max_manifest_bytes)
    outcome = await core.registrar.register(body, token, request_id(request))
    return JSONResponse(
        outcome.body,
        status_code=201 if outcome.created else 200,
        headers={"Cache-Control": "no-store"},
    )


async def manifest_schema(_request: Request) -> Response:
    """The JSON Schema of the plugin manifest."""
    return JSONResponse(manifest_json_schema(), media_type="application/schema+json")


async def list_plugins(request: Request) -> Response:
    """Every plugin with its status, health and risk rating."""
    core = auth.core_of(request)
    await auth.admin(request, "plugins:manage")
    status = query_text(request, "status", 32)
    async with core.sessions() as s:
        query = select(Plugin).order_by(col(Plugin.id))
        if status:
            query = query.where(col(Plugin.status) == status)
        rows = (await s.execute(query)).scalars().all()
    return JSONResponse({"items": [plugin_record(r) for r in rows]})


async def get_plugin(request: Request) -> Response:
    """One plugin's record (admin, or the plugin itself)."""
    core = auth.core_of(request)
    await auth.admin_or_self(request, request.path_params["plugin_id"], "plugins:manage")
    pid = path_plugin_id(request)
    async with core.sessions() as s:
        row = await s.get(Plugin, pid)
    if row is None:
        raise not_found(f"no plugin {pid!r}")
    return JSONResponse(plugin_record(row))


async def enable(request: Request) -> Response:
    """Approve or re-enable a plugin after validating its manifest again."""
    core = auth.core_of(request)
    principal = await auth.admin(request, "plugins:manage")
    record = await core.registrar.enable(
        path_plugin_id(request), principal.actor, request_id(request)
    )
    return JSONResponse(record)


async def disable(request: Request) -> Response:
    """Quarantine a plugin: lanes refuse it and its tokens stop working at once."""
    core = auth.core_of(request)
    principal = await auth.admin(request, "plugins:manage")
    record = await core.registrar.disable(
        path_plugin_id(request), principal.actor, request_id(request)
    )
    return JSONResponse(record)


async def unregister(request: Request) -> Response:
    """Remove a plugin (admin, or the plugin itself)."""
    core = auth.core_of(request)
    raw_pid = request.path_params["plugin_id"]
    principal = await auth.admin_or_self(request, raw_pid, "plugins:manage")
    pid = path_plugin_id(request)
    await core.registrar.unregister(pid, auth.actor_of(principal), request_id(request))
    return Response(status_code=204)


async def refresh_token(request: Request) -> Response:
    """Swap the plugin's valid token for a fresh one."""
    core = auth.core_of(request)
    token = auth.bearer(request)
    assert token is not None
    body = await core.registrar.refresh_token(path_plugin_id(request), token, request_id(request))
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


ROUTES = [
    Route("/plugins/register", register, methods=["POST"]),
    Route("/plugins/manifest.schema.json", manifest_schema, methods=["GET"]),
    Route("/plugins", list_plugins, methods=["GET"]),
    Route("/plugins/{plugin_id}", get_plugin, methods=["GET"]),
    Route("/plugins/{plugin_id}", unregister, methods=["DELETE"]),
    Route("/plugins/{plugin_id}/enable", enable, methods=["POST"]),
    Route("/plugins/{plugin_id}/disable", disable, methods=["POST"]),
    Route("/plugins/{plugin_id}/token", refresh_token, methods=["POST"]),
]
