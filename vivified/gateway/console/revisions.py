"""Config revisions: the list (who, when, which object), one revision with its diff, and
Revert — the same config-service call as `POST /admin/config/revisions/{rev}/revert`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from vivified.config.documents import ConfigError
from vivified.gateway.console.context import Ctx, page
from vivified.gateway.middleware import request_id
from vivified.gateway.params import path_int, query_int, query_text
from vivified.gateway.problems import Problem
from vivified.registry.store import config_store as store

SCOPE = "egress:manage"
PAGE_SIZE = 50


@page(SCOPE)
async def revisions_page(ctx: Ctx) -> Response:
    """Revisions, newest first, optionally of one object, a page at a time."""
    obj = query_text(ctx.request, "object", 128)
    before = query_int(ctx.request, "before", None)
    items = await store.list_revisions(
        ctx.core.sessions, obj=obj, limit=PAGE_SIZE, before_id=before
    )
    older = ""
    if len(items) == PAGE_SIZE:
        older = "/console/revisions?" + urlencode(
            {**({"object": obj} if obj else {}), "before": items[-1]["id"]}
        )
    return ctx.render("revisions.html", items=items, object=obj or "", older=older)


def _rows(diff: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, entry in diff.items():
        out.append({"field": key or "(whole value)", **entry})
    return out


@page(SCOPE)
async def revision_page(ctx: Ctx) -> Response:
    """One revision: before, after, the diff, and Revert."""
    rev = path_int(ctx.request, "rev", "revision")
    try:
        revision = await ctx.core.config.get_revision(rev)
    except ConfigError as exc:
        raise Problem.of(exc) from exc
    reverted = ctx.request.query_params.get("reverted", "")
    return ctx.render(
        "revision.html",
        r=revision,
        rows=_rows(revision["diff"]),
        reverted=reverted if reverted.isdigit() else "",
    )


@page(SCOPE)
async def revert(ctx: Ctx) -> Response:
    """Put the object back as it was before this revision (a new revision, audited)."""
    rev = path_int(ctx.request, "rev", "revision")
    try:
        result = await ctx.core.config.revert(
            rev,
            actor=ctx.principal.actor,
            comment=ctx.form.get("comment", "").strip()[:500],
            request_id=request_id(ctx.request),
        )
    except ConfigError as exc:
        raise Problem.of(exc) from exc
    newest = await store.list_revisions(ctx.core.sessions, obj=result["object"], limit=1)
    target = newest[0]["id"] if newest else rev
    return RedirectResponse(f"/console/revisions/{target}?reverted={rev}", status_code=303)
