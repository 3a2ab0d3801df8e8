"""Admin identities: users with scopes and their API tokens (`admins:manage`)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.admin_audit import record_admin_action
from vivified.gateway.bodies import json_object, read_json
from vivified.gateway.problems import Problem, not_found
from vivified.registry import admins

BODY_CAP = 64 * 1024
NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,62}$")
MAX_TTL = 365 * 24 * 3600


def _invalid(path: str, code: str, message: str) -> Problem:
    return Problem(
        422, message, code=code, errors=[{"path": path, "code": code, "message": message}]
    )


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
    if not set(scopes) <= principal.scopes:
        raise Problem(403, "you cannot grant scopes you do not hold", code="scope_not_held")
    try:
        user = await admins.create_admin_user(core.sessions, name, scopes)
    except admins.AdminError as exc:
        status = 409 if exc.code == "name_taken" else 422
        raise Problem(status, exc.message, code=exc.code) from exc
    await record_admin_action(request, principal.actor, "admin_user_create", name, 201)
    return JSONResponse(user, status_code=201)


async def list_users(request: Request) -> Response:
    await auth.admin(request, "admins:manage")
    return JSONResponse({"items": await admins.list_admin_users(auth.core_of(request).sessions)})


async def create_token(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "admins:manage")
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
    user_id = request.path_params["user_id"]
    try:
        issued = await admins.issue_admin_token(
            core.sessions, user_id, name=name, scopes=scopes, ttl_seconds=ttl
        )
    except admins.AdminError as exc:
        if exc.code == "not_found":
            raise not_found("no such admin user") from exc
        raise Problem(422, exc.message, code=exc.code) from exc
    await record_admin_action(request, principal.actor, "admin_token_create", user_id, 201)
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
    await auth.admin(request, "admins:manage")
    items = await admins.list_admin_tokens(
        auth.core_of(request).sessions, request.path_params["user_id"]
    )
    return JSONResponse({"items": items})


async def revoke_token(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "admins:manage")
    token_id = request.path_params["token_id"]
    if not await admins.revoke_admin_token(core.sessions, token_id):
        raise not_found("no such active admin token")
    await record_admin_action(request, principal.actor, "admin_token_revoke", token_id, 204)
    return Response(status_code=204)


ROUTES = [
    Route("/admin/users", create_user, methods=["POST"]),
    Route("/admin/users", list_users, methods=["GET"]),
    Route("/admin/users/{user_id}/tokens", create_token, methods=["POST"]),
    Route("/admin/users/{user_id}/tokens", list_tokens, methods=["GET"]),
    Route("/admin/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
