"""Admin identities: users with scopes and their API tokens.

Nobody gives power it does not hold (rules in `registry.admins`): creating users and acting on
another admin's tokens needs `admins:manage`; any admin may mint (within its own scopes),
list and revoke its own tokens, with `me` standing for its own user id. Refusals are 403 with
a stable reason, change nothing, and are audited as denied.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.admin.record import record_admin_action, refusals_audited
from vivified.gateway.bodies import json_object, read_json
from vivified.gateway.params import path_record_id
from vivified.gateway.problems import Problem
from vivified.registry.identity import admins

BODY_CAP = 64 * 1024
NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,62}$")
MAX_TTL = 365 * 24 * 3600
SELF = "me"


def _invalid(path: str, code: str, message: str) -> Problem:
    return Problem(
        422, message, code=code, errors=[{"path": path, "code": code, "message": message}]
    )


def _user_id(request: Request, principal: admins.AdminPrincipal) -> str:
    """The `{user_id}` of the path; `me` is the caller's own."""
    user_id = path_record_id(request, "user_id", "admin user")
    return principal.user_id if user_id == SELF else user_id


async def create_user(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "admins:manage")
    body = json_object(await read_json(request, BODY_CAP))
    name, scopes = body.get("name"), body.get("scopes", [])
    if set(body) - {"name", "scopes"}:
        raise _invalid("", "unknown_field", "known fields: name, scopes")
    if not isinstance(name, str) or not NAME.match(name):
        raise _invalid("/name", "invalid_name", "name: lower-case letters, digits, . _ @ -")
    if not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes):
        raise _invalid("/scopes", "invalid_type", "scopes is a list of scope names")
    async with refusals_audited(
        request, actor=principal.actor, action="admin_user_create", target=name
    ):
        user = await admins.create_admin_user(core.sessions, name, scopes, by=principal)
    await record_admin_action(request, principal.actor, "admin_user_create", name, 201)
    return JSONResponse(user, status_code=201)


async def list_users(request: Request) -> Response:
    await auth.admin(request, "admins:manage")
    return JSONResponse({"items": await admins.list_admin_users(auth.core_of(request).sessions)})


async def create_token(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, None)  # the registry checks whose and which scopes
    body = json_object(await read_json(request, BODY_CAP, allow_empty=True))
    if set(body) - {"name", "scopes", "ttl_seconds"}:
        raise _invalid("", "unknown_field", "known fields: name, scopes, ttl_seconds")
    name = body.get("name", "")
    scopes = body.get("scopes")
    ttl = body.get("ttl_seconds")
    if not isinstance(name, str) or len(name) > 100:
        raise _invalid("/name", "invalid_name", "name is a short label")
    if scopes is not None and (
        not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes)
    ):
        raise _invalid("/scopes", "invalid_type", "scopes is a list of scope names")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= MAX_TTL
    ):
        raise _invalid("/ttl_seconds", "out_of_range", f"ttl_seconds is 60 to {MAX_TTL}")
    user_id = _user_id(request, principal)
    async with refusals_audited(
        request, actor=principal.actor, action="admin_token_create", target=user_id
    ):
        issued = await admins.issue_admin_token(
            core.sessions, user_id, by=principal, name=name, scopes=scopes, ttl_seconds=ttl
        )
    await record_admin_action(
        request,
        principal.actor,
        "admin_token_create",
        f"admin:{issued.user_name}",
        201,
        detail={
            "user_id": user_id,
            "token_id": issued.token_id,
            "scopes": list(issued.scopes),
            "expires_at": issued.expires_at,
        },
    )
    return JSONResponse(
        {
            "id": issued.token_id,
            "token": issued.token,
            "scopes": list(issued.scopes),
            "expires_at": issued.expires_at,
        },
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


async def list_tokens(request: Request) -> Response:
    principal = await auth.admin(request, None)  # the registry checks whose
    items = await admins.list_admin_tokens(
        auth.core_of(request).sessions, _user_id(request, principal), by=principal
    )
    return JSONResponse({"items": items})


async def revoke_token(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, None)  # the registry checks whose and which scopes
    token_id = path_record_id(request, "token_id", "admin token")
    async with refusals_audited(
        request, actor=principal.actor, action="admin_token_revoke", target=token_id
    ):
        revoked = await admins.revoke_admin_token(core.sessions, token_id, by=principal)
    await record_admin_action(
        request,
        principal.actor,
        "admin_token_revoke",
        f"admin:{revoked.user_name}",
        204,
        detail={
            "token_id": revoked.token_id,
            "user_id": revoked.user_id,
            "scopes": list(revoked.scopes),
        },
    )
    return Response(status_code=204)


ROUTES = [
    Route("/admin/users", create_user, methods=["POST"]),
    Route("/admin/users", list_users, methods=["GET"]),
    Route("/admin/users/{user_id}/tokens", create_token, methods=["POST"]),
    Route("/admin/users/{user_id}/tokens", list_tokens, methods=["GET"]),
    Route("/admin/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
