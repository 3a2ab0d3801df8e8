"""Admin routes of the foundation: registration tokens and the audit trail."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.admin.record import record_admin_action
from vivified.gateway.bodies import json_object, read_json
from vivified.gateway.params import (
    MAX_INT,
    invalid_query,
    only_params,
    path_record_id,
    query_choice,
    query_int,
    query_text,
    query_time,
)
from vivified.gateway.problems import Problem, not_found
from vivified.registry.audit.chain import verify_chain
from vivified.registry.audit.query import DECISIONS, LANES, decode_cursor, query_audit
from vivified.registry.audit.query import MAX_LIMIT as AUDIT_MAX_LIMIT
from vivified.registry.identity import registration_tokens as regtokens

PLUGIN_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
AUDIT_PARAMS = (
    "actor",
    "target",
    "lane",
    "action",
    "decision",
    "since",
    "until",
    "limit",
    "cursor",
)
ADMIN_BODY_CAP = 64 * 1024


def _int_field(
    body: dict[str, Any], name: str, default: int, lo: int, hi: int, errors: list[dict[str, str]]
) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        errors.append(
            {
                "path": f"/{name}",
                "code": "out_of_range",
                "message": f"{name} must be an integer from {lo} to {hi}",
            }
        )
        return default
    return value


async def create_registration_token(request: Request) -> Response:
    """Issue a registration token, optionally bound to one plugin id."""
    core = auth.core_of(request)
    principal = await auth.admin(request, "plugins:manage")
    body = json_object(await read_json(request, ADMIN_BODY_CAP, allow_empty=True))
    errors: list[dict[str, str]] = []
    for key in body:
        if key not in {"plugin_id", "uses", "ttl_seconds"}:
            errors.append(
                {
                    "path": f"/{key}",
                    "code": "unknown_field",
                    "message": "known fields: plugin_id, uses, ttl_seconds",
                }
            )
    plugin_id = body.get("plugin_id")
    if plugin_id is not None and (
        not isinstance(plugin_id, str) or not PLUGIN_ID.match(plugin_id) or len(plugin_id) > 63
    ):
        errors.append(
            {
                "path": "/plugin_id",
                "code": "invalid_id",
                "message": "plugin_id must be a valid plugin id",
            }
        )
        plugin_id = None
    uses = _int_field(body, "uses", 1, 1, regtokens.MAX_USES, errors)
    ttl = _int_field(
        body, "ttl_seconds", core.settings.registration_token_ttl, 60, regtokens.MAX_TTL, errors
    )
    if errors:
        raise Problem(422, "the request has problems", code="invalid_body", errors=errors)
    issued = await regtokens.create_registration_token(
        core.sessions,
        plugin_id=plugin_id,
        uses=uses,
        ttl_seconds=ttl,
        created_by=principal.actor,
    )
    await record_admin_action(
        request,
        principal.actor,
        "registration_token_create",
        plugin_id or "*",
        201,
        reason="created",
        detail={"token_id": issued.id, "uses": uses, "ttl_seconds": ttl},
    )
    return JSONResponse(
        {
            "id": issued.id,
            "token": issued.token,
            "expires_at": issued.expires_at,
            "uses": issued.uses,
            "plugin_id": issued.plugin_id,
        },
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


async def list_registration_tokens(request: Request) -> Response:
    """Registration tokens' metadata (never the tokens)."""
    core = auth.core_of(request)
    await auth.admin(request, "plugins:manage")
    only_params(request, ())
    return JSONResponse({"items": await regtokens.list_registration_tokens(core.sessions)})


async def revoke_registration_token(request: Request) -> Response:
    """Revoke a registration token."""
    core = auth.core_of(request)
    principal = await auth.admin(request, "plugins:manage")
    token_id = path_record_id(request, "token_id", "registration token")
    if not await regtokens.revoke_registration_token(core.sessions, token_id):
        raise not_found(f"no registration token {token_id!r}")
    await record_admin_action(
        request, principal.actor, "registration_token_revoke", token_id, 204, reason="revoked"
    )
    return Response(status_code=204)


def _cursor(request: Request) -> str | None:
    """The paging cursor: short, and naming a record id within 1..2**63-1."""
    cursor = query_text(request, "cursor", 64)
    if cursor is None:
        return None
    try:
        last = decode_cursor(cursor)
    except ValueError:
        last = 0
    if not 1 <= last <= MAX_INT:
        raise invalid_query("cursor", "invalid_cursor", "a next_cursor value from a response")
    return cursor


async def audit_records(request: Request) -> Response:
    """Query the audit trail, newest first, with filters and a paging cursor."""
    core = auth.core_of(request)
    await auth.admin(request, "audit:read")
    only_params(request, AUDIT_PARAMS)
    limit = query_int(request, "limit", 100, hi=AUDIT_MAX_LIMIT)
    try:
        items, cursor = await query_audit(
            core.sessions,
            actor=query_text(request, "actor"),
            target=query_text(request, "target"),
            lane=query_choice(request, "lane", LANES),
            action=query_text(request, "action"),
            decision=query_choice(request, "decision", DECISIONS),
            since=query_time(request, "since"),
            until=query_time(request, "until"),
            limit=limit or 100,
            cursor=_cursor(request),
        )
    except ValueError as exc:
        raise Problem(400, str(exc), code="bad_query") from exc
    return JSONResponse({"items": items, "next_cursor": cursor})


async def audit_verify(request: Request) -> Response:
    """Verify the audit hash chain end to end."""
    core = auth.core_of(request)
    await auth.admin(request, "audit:read")
    await core.audit.flush()
    started = time.perf_counter()
    report = await verify_chain(core.sessions)
    return JSONResponse(
        {
            "ok": report.ok,
            "checked": report.checked,
            "first_bad_id": report.first_bad_id,
            "problem": report.problem,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )


ROUTES = [
    Route("/admin/registration-tokens", create_registration_token, methods=["POST"]),
    Route("/admin/registration-tokens", list_registration_tokens, methods=["GET"]),
    Route("/admin/registration-tokens/{token_id}", revoke_registration_token, methods=["DELETE"]),
    Route("/admin/audit", audit_records, methods=["GET"]),
    Route("/admin/audit/verify", audit_verify, methods=["GET"]),
]
