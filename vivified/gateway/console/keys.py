"""Signing keys: every key with its publish window, and Rotate (the same call as
`POST /admin/keys/rotate`: this gateway signs with the new key at once)."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from vivified.gateway.admin.keys import SCOPE, publish_window, rotate, signing_keys
from vivified.gateway.console.context import Ctx, page


@page(SCOPE)
async def keys_page(ctx: Ctx) -> Response:
    """The signing keys, newest first, and the Rotate button."""
    rotated = ctx.request.query_params.get("rotated", "")
    return ctx.render(
        "keys.html",
        items=await signing_keys(ctx.core),
        window=int(publish_window(ctx.core)),
        rotated=rotated if rotated.replace("-", "").replace("_", "").isalnum() else "",
    )


@page(SCOPE)
async def rotate_action(ctx: Ctx) -> Response:
    """Start signing with a new key; the old one stays published for its tokens' lifetime."""
    kid = await rotate(ctx.request, ctx.principal.actor)
    return RedirectResponse(f"/console/keys?rotated={kid}", status_code=303)
