"""Registration tokens: create (shown once), list, revoke — the API's service calls."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from vivified.gateway.admin.record import record_admin_action
from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.params import PLUGIN_ID, PLUGIN_ID_MAX, path_record_id
from vivified.registry.identity import registration_tokens as regtokens


def _int(form: dict[str, str], name: str, default: int, lo: int, hi: int, errors: list[str]) -> int:
    raw = form.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or not lo <= int(raw) <= hi:
        errors.append(f"{name} must be a whole number from {lo} to {hi}")
        return default
    return int(raw)


async def _page(ctx: Ctx, status: int = 200, **kw: Any) -> Response:
    items = await regtokens.list_registration_tokens(ctx.core.sessions)
    return ctx.render(
        "tokens.html",
        status=status,
        items=list(reversed(items)),
        default_ttl=ctx.core.settings.registration_token_ttl,
        max_uses=regtokens.MAX_USES,
        max_ttl=regtokens.MAX_TTL,
        **({"issued": None, "errors": [], "form": {}, "revoked": ""} | kw),
    )


@page("plugins:manage")
async def tokens_page(ctx: Ctx) -> Response:
    """Registration tokens (metadata only) and the form that issues one."""
    revoked = ctx.request.query_params.get("revoked", "")
    return await _page(ctx, revoked=revoked if len(revoked) <= 64 and revoked.isalnum() else "")


@page("plugins:manage")
async def create_token(ctx: Ctx) -> Response:
    """Issue a registration token: the page shows it this once, with a copy button."""
    form = ctx.form
    errors: list[str] = []
    plugin_id = form.get("plugin_id", "").strip() or None
    if plugin_id is not None and (
        len(plugin_id) > PLUGIN_ID_MAX or not PLUGIN_ID.fullmatch(plugin_id)
    ):
        errors.append("plugin id must be 1-63 of a-z 0-9 and inner -")
    uses = _int(form, "uses", 1, 1, regtokens.MAX_USES, errors)
    ttl = _int(
        form, "ttl_seconds", ctx.core.settings.registration_token_ttl, 60, regtokens.MAX_TTL, errors
    )
    kept = {k: form.get(k, "") for k in ("plugin_id", "uses", "ttl_seconds")}
    if errors:
        return await _page(ctx, 422, errors=errors, form=kept)
    issued = await regtokens.create_registration_token(
        ctx.core.sessions,
        plugin_id=plugin_id,
        uses=uses,
        ttl_seconds=ttl,
        created_by=ctx.principal.actor,
    )
    await record_admin_action(
        ctx.request,
        ctx.principal.actor,
        "registration_token_create",
        plugin_id or "*",
        201,
        reason="created",
        detail={"token_id": issued.id, "uses": uses, "ttl_seconds": ttl},
    )
    return await _page(ctx, 201, issued=issued)


@page("plugins:manage")
async def revoke_token(ctx: Ctx) -> Response:
    """Revoke a registration token."""
    token_id = path_record_id(ctx.request, "token_id", "registration token")
    if not await regtokens.revoke_registration_token(ctx.core.sessions, token_id):
        raise ConsoleError(404, "not_found", "no such registration token")
    await record_admin_action(
        ctx.request,
        ctx.principal.actor,
        "registration_token_revoke",
        token_id,
        204,
        reason="revoked",
    )
    return RedirectResponse(f"/console/tokens?revoked={token_id}", status_code=303)
