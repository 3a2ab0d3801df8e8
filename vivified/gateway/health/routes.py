"""Plugin health routes: heartbeats from the plugin, the health record for admins and itself."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.bodies import json_object, read_json
from vivified.gateway.params import path_plugin_id
from vivified.gateway.problems import Problem, forbidden, not_found
from vivified.registry.store.tables import Plugin

HEARTBEAT_CAP = 16 * 1024


async def heartbeat(request: Request) -> Response:
    """A plugin reports that it is alive: `{status?, metrics?}`."""
    core = auth.core_of(request)
    claims = await auth.plugin_claims(request)
    if claims.plugin_id != request.path_params["plugin_id"]:
        raise forbidden("not_self", "a plugin may send heartbeats only for itself")
    pid = path_plugin_id(request)
    body = json_object(await read_json(request, HEARTBEAT_CAP, allow_empty=True))
    status = body.get("status")
    if status is not None and not isinstance(status, str):
        raise Problem(
            422,
            "status must be a string",
            code="invalid_body",
            errors=[{"path": "/status", "code": "wrong_type", "message": "expected a string"}],
        )
    metrics = body.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise Problem(
            422,
            "metrics must be an object",
            code="invalid_body",
            errors=[{"path": "/metrics", "code": "wrong_type", "message": "expected an object"}],
        )
    assert core.health is not None
    health = await core.health.heartbeat(pid, status, metrics)
    return JSONResponse({"state": health.state, "last_heartbeat": health.last_heartbeat})


async def get_health(request: Request) -> Response:
    """State, last check, consecutive failures, recent history and metrics."""
    core = auth.core_of(request)
    await auth.admin_or_self(request, request.path_params["plugin_id"], "plugins:manage")
    pid = path_plugin_id(request)
    async with core.sessions() as s:
        row = await s.get(Plugin, pid)
    if row is None:
        raise not_found(f"no plugin {pid!r}")
    detail = row.health_detail or {}
    return JSONResponse(
        {
            "state": row.health_state,
            "last_check": row.health_checked_at,
            "consecutive_failures": row.health_failures,
            "last_heartbeat": detail.get("last_heartbeat"),
            "history": detail.get("history", []),
            "metrics": detail.get("metrics", {}),
        }
    )


ROUTES = [
    Route("/plugins/{plugin_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/plugins/{plugin_id}/health", get_health, methods=["GET"]),
]
