"""Routes about core itself: liveness, readiness, JWKS, the egress CA and the API description."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.config.egress_ca import EgressCaError, ca_bundle, ensure_deployment_ca
from vivified.gateway import auth
from vivified.gateway.openapi import openapi_document
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


async def openapi(request: Request) -> Response:
    """This API's OpenAPI description (see `vivified.gateway.openapi`), built once per app."""
    state = request.app.state
    doc = getattr(state, "openapi_document", None)
    if doc is None:
        doc = state.openapi_document = openapi_document(request.app.routes)
    return JSONResponse(doc)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    Route("/egress/ca.pem", egress_ca, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
