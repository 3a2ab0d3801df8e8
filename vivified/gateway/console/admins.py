"""Admins: users with their scopes, and their API tokens (created and shown once, listed,
revoked) through the registry calls the `/admin/users` routes make, so the same rules hold:
nobody gives a scope it does not hold, a token never outlives the one that mints it."""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from vivified.gateway.admin.admins import MAX_TTL, NAME
from vivified.gateway.admin.record import record_admin_action, refusals_audited
from vivified.gateway.console.context import ConsoleError, Ctx, page
from vivified.gateway.params import path_record_id
from vivified.gateway.problems import status_of
from vivified.registry.identity import admins
from vivified.registry.identity.admins import SCOPES, AdminError

SCOPE = "admins:manage"


def _chosen(ctx: Ctx) -> list[str]:
    """The scope checkboxes ticked (`scope.<name>=on`)."""
    return [s for s in SCOPES if ctx.form.get(f"scope.{s}") == "on"]


async def _users_page(ctx: Ctx, status: int = 200, **kw: Any) -> Response:
    defaults: dict[str, Any] = {"error": "", "form": {}, "chosen": [], "created": ""}
    return ctx.render(
        "admins.html",
        status=status,
        users=await admins.list_admin_users(ctx.core.sessions),
        scopes=SCOPES,
        **(defaults | kw),
    )


@page(SCOPE)
async def admins_page(ctx: Ctx) -> Response:
    """Admin users and the form that adds one."""
    created = ctx.request.query_params.get("created", "")
    return await _users_page(ctx, created=created if NAME.match(created) else "")


@page(SCOPE)
async def create_user(ctx: Ctx) -> Response:
    """Add an admin user with scopes the signed-in admin holds."""
    name = ctx.form.get("name", "").strip()
    chosen = _chosen(ctx)
    if not NAME.match(name):
        error = "Name: lower-case letters, digits, . _ @ - (up to 63)."
        return await _users_page(ctx, 422, error=error, form={"name": name}, chosen=chosen)
    try:
        async with refusals_audited(
            ctx.request, actor=ctx.principal.actor, action="admin_user_create", target=name
        ):
            await admins.create_admin_user(ctx.core.sessions, name, chosen, by=ctx.principal)
    except AdminError as exc:
        return await _users_page(
            ctx, status_of(exc), error=exc.message, form={"name": name}, chosen=chosen
        )
    await record_admin_action(ctx.request, ctx.principal.actor, "admin_user_create", name, 201)
    return RedirectResponse(f"/console/admins?created={name}", status_code=303)


async def _user(ctx: Ctx, user_id: str) -> dict[str, Any]:
    for user in await admins.list_admin_users(ctx.core.sessions):
        if user["id"] == user_id:
            return user
    raise ConsoleError(404, "not_found", "no such admin user")


async def _tokens_page(ctx: Ctx, user_id: str, status: int = 200, **kw: Any) -> Response:
    user = await _user(ctx, user_id)
    items = await admins.list_admin_tokens(ctx.core.sessions, user_id, by=ctx.principal)
    defaults: dict[str, Any] = {"error": "", "issued": None, "form": {}, "revoked": ""}
    return ctx.render(
        "admin_user.html",
        status=status,
        user=user,
        items=list(reversed(items)),
        scopes=[s for s in SCOPES if s in user["scopes"]],
        max_ttl=MAX_TTL,
        **(defaults | kw),
    )


@page(SCOPE)
async def user_page(ctx: Ctx) -> Response:
    """One admin user's tokens (metadata only) and the form that mints one."""
    user_id = path_record_id(ctx.request, "user_id", "admin user")
    revoked = ctx.request.query_params.get("revoked", "")
    return await _tokens_page(ctx, user_id, revoked=revoked if revoked.isalnum() else "")


@page(SCOPE)
async def create_token(ctx: Ctx) -> Response:
    """Mint a token for the user; the page shows it this once."""
    user_id = path_record_id(ctx.request, "user_id", "admin user")
    await _user(ctx, user_id)
    form = ctx.form
    name = form.get("name", "").strip()[:100]
    raw_ttl = form.get("ttl_seconds", "").strip()
    ttl: int | None = None
    kept = {"name": name, "ttl_seconds": raw_ttl}
    if raw_ttl:
        if not raw_ttl.isascii() or not raw_ttl.isdigit() or not 60 <= int(raw_ttl) <= MAX_TTL:
            error = f"Lifetime: a whole number of seconds from 60 to {MAX_TTL}, or blank."
            return await _tokens_page(ctx, user_id, 422, error=error, form=kept)
        ttl = int(raw_ttl)
    scopes = _chosen(ctx)
    try:
        async with refusals_audited(
            ctx.request, actor=ctx.principal.actor, action="admin_token_create", target=user_id
        ):
            issued = await admins.issue_admin_token(
                ctx.core.sessions,
                user_id,
                by=ctx.principal,
                name=name,
                scopes=scopes or None,
                ttl_seconds=ttl,
            )
    except AdminError as exc:
        return await _tokens_page(ctx, user_id, status_of(exc), error=exc.message, form=kept)
    await record_admin_action(
        ctx.request,
        ctx.principal.actor,
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
    return await _tokens_page(ctx, user_id, 201, issued=issued)


@page(SCOPE)
async def revoke_token(ctx: Ctx) -> Response:
    """Revoke an admin token (its console sessions end with it)."""
    token_id = path_record_id(ctx.request, "token_id", "admin token")
    try:
        async with refusals_audited(
            ctx.request, actor=ctx.principal.actor, action="admin_token_revoke", target=token_id
        ):
            revoked = await admins.revoke_admin_token(ctx.core.sessions, token_id, by=ctx.principal)
    except AdminError as exc:
        raise ConsoleError(status_of(exc), exc.code, exc.message) from exc
    await record_admin_action(
        ctx.request,
        ctx.principal.actor,
        "admin_token_revoke",
        f"admin:{revoked.user_name}",
        204,
        detail={
            "token_id": revoked.token_id,
            "user_id": revoked.user_id,
            "scopes": list(revoked.scopes),
        },
    )
    return RedirectResponse(
        f"/console/admins/{revoked.user_id}?revoked={revoked.token_id}", status_code=303
    )
