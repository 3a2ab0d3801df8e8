"""`/admin/` with the provider's JWT access tokens, and the admin routes for OIDC users."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.middleware import request_id
from vivified.gateway.oidc.claims import checked_email, mapped_scopes
from vivified.gateway.oidc.service import oidc_of
from vivified.gateway.oidc.validation import TokenRefused, peek
from vivified.gateway.problems import forbidden, unauthorized
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.identity.admins import MANAGE_SCOPE, AdminError, AdminPrincipal
from vivified.registry.identity.oidc_admins import (
    OidcIdentity,
    list_oidc_users,
    oidc_api_principal,
    set_oidc_user_disabled,
)


async def provider_admin(request: Request, token: str) -> AdminPrincipal | None:
    """The admin behind a provider access token, or None when `token` is not one (OIDC API
    access not configured, or another issuer's JWT: a plugin token). A provider token that
    fails a check is 401; a user disabled in core, or whose claim maps to nothing, is 403."""
    oidc = oidc_of(request)
    if oidc is None or not oidc.config.api_audience:
        return None
    try:
        _header, unverified = peek(token)
    except TokenRefused:
        return None
    if unverified.get("iss") != oidc.config.issuer:
        return None
    try:
        claims = await oidc.validator.access_token(token, audience=oidc.config.api_audience)
        # Automation (client credentials) has no email: the domain list binds people only.
        email = ""
        if "email" in claims:
            email = checked_email(claims, oidc.config.allowed_email_domains)
    except TokenRefused as exc:
        raise unauthorized(
            exc.code, f"the provider access token is refused: {exc.message}"
        ) from exc
    scopes = mapped_scopes(claims, oidc.config.scopes_claim, oidc.config.scope_table)
    if not scopes:
        raise forbidden("no_mapped_scopes", "the provider grants this caller no admin scopes")
    who = OidcIdentity(oidc.config.issuer, claims["sub"], email)
    try:
        return await oidc_api_principal(auth.core_of(request).sessions, who, scopes, claims["exp"])
    except AdminError as exc:
        raise forbidden(exc.code, exc.message) from exc


async def _audit(request: Request, actor: str, action: str, target: str, status: int) -> None:
    await auth.core_of(request).audit.record(
        AuditEvent(
            actor=actor,
            lane="admin",
            action=action,
            target=target,
            decision="allow",
            reason="ok",
            request_id=request_id(request),
            status=status,
        )
    )


async def list_users(request: Request) -> Response:
    await auth.admin(request, MANAGE_SCOPE)
    return JSONResponse({"items": await list_oidc_users(auth.core_of(request).sessions)})


async def _set_disabled(request: Request, disabled: bool) -> Response:
    principal = await auth.admin(request, MANAGE_SCOPE)
    user_id = request.path_params["user_id"]
    # An AdminError (`not_found`, `missing_scope`) answers through the gateway's status table.
    user = await set_oidc_user_disabled(
        auth.core_of(request).sessions, user_id, disabled, by=principal
    )
    action = "admin.oidc_user.disable" if disabled else "admin.oidc_user.enable"
    await _audit(request, principal.actor, action, f"admin:{user['name']}", 200)
    return JSONResponse(user)


async def disable_user(request: Request) -> Response:
    """Refuse this OIDC user in core whatever the provider says (its sessions end)."""
    return await _set_disabled(request, True)


async def enable_user(request: Request) -> Response:
    return await _set_disabled(request, False)


ADMIN_ROUTES = [
    Route("/admin/oidc/users", list_users, methods=["GET"]),
    Route("/admin/oidc/users/{user_id}/disable", disable_user, methods=["POST"]),
    Route("/admin/oidc/users/{user_id}/enable", enable_user, methods=["POST"]),
]
