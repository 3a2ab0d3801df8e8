"""Key material over HTTP.

Signing keys: rotate (this replica signs with the new key at once, and a change notice makes
every other one follow within a second; the old keys stay published until the tokens they
signed expire) and the keys' publish windows. The egress CA: rotate (a new CA, the signer
once the egress replicas reload; `GET /egress/ca.pem` serves old and new during the
overlap)."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.config.bus import EGRESS_CA_CHANGED, KEYS_CHANGED
from vivified.config.egress_ca import EgressCaError, ca_bundle, rotate_ca
from vivified.gateway import auth
from vivified.gateway.admin.record import record_admin_action
from vivified.gateway.core import Core
from vivified.gateway.problems import Problem
from vivified.registry.store.tables import SigningKey

SCOPE = "keys:manage"
CA_SCOPE = "egress:manage"


def publish_window(core: Core) -> float:
    """How long a retired key stays published: the lifetime of the tokens it signed, plus an
    hour (the same window as `vivified keys rotate`)."""
    return float(core.settings.token_ttl + 3600)


async def signing_keys(core: Core) -> list[dict[str, Any]]:
    """Every key's public facts, newest first (never the private key)."""
    async with core.sessions() as s:
        stmt = select(SigningKey).order_by(col(SigningKey.created_at).desc())
        rows = (await s.execute(stmt)).scalars().all()
    current = core.keys.current_kid
    return [
        {
            "kid": r.kid,
            "created_at": r.created_at,
            "retired_at": r.retired_at,
            "publish_until": r.publish_until,
            "current": r.kid == current,
        }
        for r in rows
    ]


async def rotate(request: Request, actor: str) -> str:
    """Rotate the signing key for `request`'s gateway and audit it with `actor`."""
    core = auth.core_of(request)
    old = core.keys.current_kid
    kid = await core.keys.rotate(publish_for=publish_window(core))
    if core.bus is not None:  # without NATS, the others' periodic reload carries it
        await core.bus.publish_change(KEYS_CHANGED)
    await record_admin_action(
        request, actor, "keys_rotate", kid, 200, reason="rotated", detail={"previous": old}
    )
    return kid


async def rotate_keys(request: Request) -> Response:
    principal = await auth.admin(request, SCOPE)
    return JSONResponse({"kid": await rotate(request, principal.actor)})


async def list_keys(request: Request) -> Response:
    await auth.admin(request, SCOPE)
    return JSONResponse({"items": await signing_keys(auth.core_of(request))})


async def rotate_egress_ca(request: Request) -> Response:
    """Rotate the egress CA: a new one signs once the replicas reload; both are served meanwhile."""
    principal = await auth.admin(request, CA_SCOPE)
    core = auth.core_of(request)
    before = await ca_bundle(core.sessions)
    try:
        ca = await rotate_ca(core.sessions, core.settings)
    except EgressCaError as exc:  # this replica cannot seal a CA (its key-encryption key)
        raise Problem(503, str(exc), code=exc.code) from exc
    if core.bus is not None:
        await core.bus.publish_change(EGRESS_CA_CHANGED)
    previous = before[0].ca_id if before else None
    await record_admin_action(
        request,
        principal.actor,
        "egress_ca_rotate",
        ca.ca_id,
        200,
        reason="rotated",
        detail={"previous": previous},
    )
    return JSONResponse({"id": ca.ca_id, "name": ca.name, "previous": previous})


ROUTES = [
    Route("/admin/keys", list_keys, methods=["GET"]),
    Route("/admin/keys/rotate", rotate_keys, methods=["POST"]),
    Route("/admin/egress/ca/rotate", rotate_egress_ca, methods=["POST"]),
]
