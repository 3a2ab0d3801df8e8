"""Routes about core itself: liveness, readiness, JWKS, the egress CA and the API description."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from vivified.config.egress_ca import EgressCaError, ca_bundle, ensure_deployment_ca
from vivified.gateway import auth
from vivified.gateway.problems import Problem
from vivified.registry.audit.quarantine import count as quarantine_count

log = logging.getLogger(__name__)


async def healthz(_request: Request) -> Response:
    """Liveness: 200 once the gateway serves."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers and the audit writer is committing."""
    core = auth.core_of(request)
    checks: dict[str, str] = {}
    quarantined: int | None = None
    try:
        async with core.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            # Records the store refused (kept aside, a stand-in in the chain): an operator's
            # alert, not a reason to take the replica out of service.
            quarantined = await quarantine_count(conn)
    except Exception as exc:  # any failure means not ready; the reason goes to the log
        log.warning("readiness: database check failed", extra={"error": type(exc).__name__})
        checks.setdefault("database", "unavailable")
    checks["audit"] = "ok" if core.audit.healthy else "failing"
    ready = all(v == "ok" for v in checks.values())
    # NATS is reported but does not fail readiness: without it the lanes keep serving on their
    # snapshot (refreshed by the periodic reload); pulling every replica would be worse.
    if core.bus is None:
        checks["nats"] = "not_configured"
    else:
        checks["nats"] = "ok" if core.bus.connected else "disconnected"
    status = "ready" if ready else "not_ready"
    if ready and checks["nats"] == "disconnected":
        status = "degraded"
    body: dict[str, Any] = {"status": status, "checks": checks, "quarantined": quarantined}
    return JSONResponse(body, status_code=200 if ready else 503)


async def jwks(request: Request) -> Response:
    """Core's public signing keys (JWK Set)."""
    return JSONResponse(auth.core_of(request).keys.jwks(), headers={"Cache-Control": "max-age=60"})


async def egress_ca(request: Request) -> Response:
    """The public CA certificate plugins trust for the intercepting egress proxy."""
    # One per deployment, from the registry: every egress replica signs with the first one;
    # during a rotation's overlap the replaced one follows it.
    core = auth.core_of(request)
    published = await ca_bundle(core.sessions)
    if not published:
        try:
            published = [await ensure_deployment_ca(core.sessions, core.settings)]
        except EgressCaError as exc:
            raise Problem(503, str(exc), code=exc.code) from exc
    pem = "".join(ca.cert_pem for ca in published)
    return Response(pem.encode(), media_type="application/x-pem-file")


# A route without methods is an ASGI app taking every method: in core, the operator lane.
LANE_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")
LANE_SUMMARY = "Operator API lane: call the `service` plugin's declared endpoint at `rest`"


def _schema_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """(full path, route) of every route in the schema, the routes of Mounts included."""
    for route in routes:
        if isinstance(route, Mount):
            yield from _schema_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.include_in_schema:
            yield prefix + route.path_format, route


def openapi_document(routes: list[BaseRoute]) -> dict[str, Any]:
    """An OpenAPI 3.1 description built from the routes and their docstrings."""
    paths: dict[str, dict[str, Any]] = {}
    for path, route in _schema_routes(routes):
        if route.methods is None:
            summary, methods = LANE_SUMMARY, set(LANE_METHODS)
        else:
            summary = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
            methods = set(route.methods)
        for method in sorted(methods - {"HEAD"}):
            op: dict[str, Any] = {
                "summary": summary,
                "operationId": f"{method.lower()}_{route.name}",
                "responses": {
                    "default": {
                        "description": "problem details (RFC 9457)",
                        "content": {"application/problem+json": {}},
                    }
                },
            }
            params = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in route.param_convertors
            ]
            if params:
                op["parameters"] = params
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vivified core", "version": "0.1.0"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


async def openapi(request: Request) -> Response:
    """This API's OpenAPI description."""
    return JSONResponse(openapi_document(request.app.routes))


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    Route("/egress/ca.pem", egress_ca, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
