"""The config API over HTTP: egress document, per-plugin allowlists, revisions and revert.

Each object has a version, sent as `ETag: "N"`; a write with `If-Match` naming another
version answers 412 and changes nothing.

What GET answers can be PUT back unchanged: read-only members (`version`, an allowlist's
`requested`) are ignored when equal to the stored ones, refused when not (412
`stale_version`, 409 `read_only_member`), and `version` serves as If-Match when none is
sent. PUT replaces the whole object: a member left out is 422 (`missing_member`, one error
per member), never silently reset. PATCH takes an RFC 7396 JSON Merge Patch
(`application/merge-patch+json`; null removes a member, a removed top-level member goes back
to its default) and is validated and versioned like a PUT of the result.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.bodies import read_json
from vivified.gateway.middleware import request_id
from vivified.gateway.params import only_params, path_int, path_plugin_id, query_int, query_text
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


MERGE_PATCH = "application/merge-patch+json"


def _merge_patch_type(request: Request) -> None:
    """PATCH bodies are JSON Merge Patches: 415 for any other media type."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != MERGE_PATCH:
        raise Problem(
            415,
            f"send the changes as a JSON Merge Patch ({MERGE_PATCH}, RFC 7396)",
            code="unsupported_media_type",
        )


def versioned(value: dict[str, Any], version: int) -> Response:
    return JSONResponse({**value, "version": version}, headers={"ETag": f'"{version}"'})


async def get_egress(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "egress:manage")
    got = await core.config.get_egress()
    return versioned(got.value, got.version)


async def change_of(
    request: Request, scope: str = "egress:manage", *, plugin: bool = False, patch: bool = False
) -> tuple[Any, dict[str, Any]]:
    """A write's body, and the config service's keywords for it: who, the expected version,
    the comment, the request id, and the path's plugin id when `plugin`. Checked in this
    order: admin with `scope`, plugin id, media type (a PATCH's must be a JSON Merge Patch),
    If-Match, body."""
    principal = await auth.admin(request, scope)
    change: dict[str, Any] = {"plugin_id": path_plugin_id(request)} if plugin else {}
    if patch:
        _merge_patch_type(request)
    expected = _expected(request)
    body = await read_json(request, BODY_CAP)
    return body, change | {
        "expected": expected,
        "actor": principal.actor,
        "comment": _comment(body),
        "request_id": request_id(request),
    }


async def put_egress(request: Request) -> Response:
    body, change = await change_of(request)
    got = await auth.core_of(request).config.put_egress(body, full=True, **change)
    return versioned(got.value, got.version)


async def patch_egress(request: Request) -> Response:
    body, change = await change_of(request, patch=True)
    got = await auth.core_of(request).config.patch_egress(body, **change)
    return versioned(got.value, got.version)


async def get_allowlist(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "egress:manage")
    got = await core.config.get_allowlist(path_plugin_id(request))
    return versioned(got.value, got.version)


async def put_allowlist(request: Request) -> Response:
    body, change = await change_of(request, plugin=True)
    got = await auth.core_of(request).config.put_allowlist(body=body, full=True, **change)
    return versioned(got.value, got.version)


async def patch_allowlist(request: Request) -> Response:
    body, change = await change_of(request, plugin=True, patch=True)
    got = await auth.core_of(request).config.patch_allowlist(patch=body, **change)
    return versioned(got.value, got.version)


async def list_revisions(request: Request) -> Response:
    core = auth.core_of(request)
    await auth.admin(request, "egress:manage")
    only_params(request, ("object", "limit", "before"))
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
    return JSONResponse(await core.config.get_revision(rev))


async def revert_revision(request: Request) -> Response:
    core = auth.core_of(request)
    principal = await auth.admin(request, "egress:manage")
    rev = path_int(request, "rev", "revision")
    body = await read_json(request, BODY_CAP, allow_empty=True)
    result = await core.config.revert(
        rev,
        actor=principal.actor,
        comment=_comment(body),
        request_id=request_id(request),
    )
    return JSONResponse(result)


ROUTES = [
    Route("/admin/egress", get_egress, methods=["GET"]),
    Route("/admin/egress", put_egress, methods=["PUT"]),
    Route("/admin/egress", patch_egress, methods=["PATCH"]),
    Route("/admin/plugins/{plugin_id}/allowed-domains", get_allowlist, methods=["GET"]),
    Route("/admin/plugins/{plugin_id}/allowed-domains", put_allowlist, methods=["PUT"]),
    Route("/admin/plugins/{plugin_id}/allowed-domains", patch_allowlist, methods=["PATCH"]),
    Route("/admin/config/revisions", list_revisions, methods=["GET"]),
    Route("/admin/config/revisions/{rev}", get_revision, methods=["GET"]),
    Route("/admin/config/revisions/{rev}/revert", revert_revision, methods=["POST"]),
]
