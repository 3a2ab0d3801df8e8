"""Routes about core itself: liveness, readiness, JWKS, the egress CA and the API description."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from vivified.config.egress_ca import ensure_ca
from vivified.gateway import auth

log = logging.getLogger(__name__)


async def healthz(_request: Request) -> Response:
    """Liveness: 200 once the gateway serves."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database answers and the audit writer is committing."""
    core = auth.core_of(request)
    checks: dict[str, str] = {}
    try:
        async with core.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason goes to the log
        log.warning("readiness: database check failed", extra={"error": type(exc).__name__})
        checks["database"] = "unavailable"
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
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)


async def jwks(request: Request) -> Response:
    """Core's public signing keys (JWK Set)."""
    return JSONResponse(auth.core_of(request).keys.jwks(), headers={"Cache-Control": "max-age=60"})


async def egress_ca(request: Request) -> Response:
    """The public CA certificate plugins trust for the intercepting egress proxy."""
    path = ensure_ca(auth.core_of(request).settings.data_dir)
    return Response(path.read_bytes(), media_type="application/x-pem-file")


def openapi_document(routes: list[BaseRoute]) -> dict[str, Any]:
    """An OpenAPI 3.1 description built from the routes and their docstrings."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        summary = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
        for method in sorted((route.methods or set()) - {"HEAD"}):
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
            paths.setdefault(route.path, {})[method.lower()] = op
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
