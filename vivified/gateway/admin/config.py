"""The config API over HTTP: egress document, per-plugin allowlists, revisions and revert.

Each object has a version, sent as `ETag: "N"`; a write with `If-Match` naming another
version answers 412 and changes nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.config.config_service import ConfigError
from vivified.gateway import auth
from vivified.gateway.bodies import read_json
from vivified.gateway.middleware import request_id
from vivified.gateway.params import path_int, path_plugin_id, query_int, query_text
from vivified.gateway.problems import Problem
from vivified.registry.store import config_store as store

BODY_CAP = 1024 * 1024
MAX_LIMIT = 500


def _expected(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise Problem(400, 'If-Match must be a version ETag such as "3"', code="bad_if_match")
    return int(text)


def _comment(body: Any) -> str:
    comment = body.get("comment", "") if isinstance(body, dict) else ""
    return comment[:500] if isinstance(comment, str) else ""


def _versioned(value: dict[str, Any], version: int) -> Response:
    return JSONResponse({**value, "version": version}, headers={"ETag": f'"{version}"'})


def _problem(exc: ConfigError) -> Problem:
    return Problem(exc.status, exc.message, code=exc.code, errors=exc.errors)


async def get_egress(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "egress:manage")
    got = await core.config.get_egress()
    return _versioned(got.value, got.version)


async def put_egress(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "egress:manage")
    expected = _expected(request)
    body = await read_json(request, BODY_CAP)
    try:
        got = await core.config.put_egress(
            body,
            expected=expected,
            actor=principal.actor,
            comment=_comment(body),
            request_id=request_id(request),
        )
    except ConfigError as exc:
        raise _problem(exc) from exc
    return _versioned(got.value, got.version)


async def get_allowlist(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "egress:manage")
    try:
        got = await core.config.get_allowlist(path_plugin_id(request))
    except ConfigError as exc:
        raise _problem(exc) from exc
    return _versioned(got.value, got.version)


async def put_allowlist(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "egress:manage")
    plugin_id = path_plugin_id(request)
    expected = _expected(request)
    body = await read_json(request, BODY_CAP)
    try:
        got = await core.config.put_allowlist(
            plugin_id,
            body,
            expected=expected,
            actor=principal.actor,
            comment=_comment(body),
            request_id=request_id(request),
        )
    except ConfigError as exc:
        raise _problem(exc) from exc
    return _versioned(got.value, got.version)


async def list_revisions(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "egress:manage")
    limit = query_int(request, "limit", 100) or 100
    items = await store.list_revisions(
        core.sessions,
        obj=query_text(request, "object"),
        limit=min(limit, MAX_LIMIT),
        before_id=query_int(request, "before", None),
    )
    return JSONResponse({"items": items})


async def get_revision(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "egress:manage")
    rev = path_int(request, "rev", "revision")
    try:
        return JSONResponse(await store.get_revision(core.sessions, rev))
    except store.UnknownObject as exc:
        raise Problem(404, f"no revision {rev}", code="not_found") from exc


async def revert_revision(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "egress:manage")
    rev = path_int(request, "rev", "revision")
    body = await read_json(request, BODY_CAP, allow_empty=True)
    try:
        result = await core.config.revert(
            rev,
            actor=principal.actor,
            comment=_comment(body),
            request_id=request_id(request),
        )
    except ConfigError as exc:
        raise _problem(exc) from exc
    return JSONResponse(result)


ROUTES = [
    Route("/admin/egress", get_egress, methods=["GET"]),
    Route("/admin/egress", put_egress, methods=["PUT"]),
    Route("/admin/plugins/{plugin_id}/allowed-domains", get_allowlist, methods=["GET"]),
    Route("/admin/plugins/{plugin_id}/allowed-domains", put_allowlist, methods=["PUT"]),
    Route("/admin/config/revisions", list_revisions, methods=["GET"]),
    Route("/admin/config/revisions/{rev}", get_revision, methods=["GET"]),
    Route("/admin/config/revisions/{rev}/revert", revert_revision, methods=["POST"]),
]
