"""Who is calling: admin principals and plugin tokens, from one Authorization header."""

from __future__ import annotations

from starlette.requests import Request

from vivified.gateway.core import Core
from vivified.gateway.oidc.api import provider_admin
from vivified.gateway.problems import Problem, forbidden, unauthorized
from vivified.registry.identity.admins import AdminPrincipal, authenticate_admin
from vivified.registry.identity.bearer import extract_bearer
from vivified.registry.identity.tokens import PluginClaims, TokenError, verify_current
from vivified.registry.plugins.record import looks_like_jwt


def core_of(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


def bearer(request: Request, *, required: bool = True) -> str | None:
    """The one Bearer token of the request; TokenError (401) for duplicates, query tokens or
    bad syntax, and for none at all when `required`."""
    try:
        return extract_bearer(request.scope["headers"], request.scope.get("query_string", b""))
    except TokenError as exc:
        if exc.code == "missing_token" and not required:
            return None
        raise


async def plugin_claims(request: Request, token: str | None = None) -> PluginClaims:
    """Verify a plugin token (cached until expiry or revocation; a refusal on a snapshot behind
    the registry is confirmed first); raises TokenError."""
    core = core_of(request)
    token = token if token is not None else bearer(request)
    assert token is not None
    return await verify_current(core.tokens, core.snapshot, token)


async def admin(request: Request, scope: str | None, token: str | None = None) -> AdminPrincipal:
    """Authenticate an admin and require `scope` (None: any admin; the route checks further)."""
    token = token if token is not None else bearer(request)
    assert token is not None
    # A JWT is the OpenID Provider's access token (when VIVIFIED_OIDC_API_AUDIENCE is set:
    # checked there, 401 if refused) or a plugin's token (403 below).
    jwt_admin = await provider_admin(request, token) if looks_like_jwt(token) else None
    if looks_like_jwt(token) and jwt_admin is None:
        raise forbidden("admin_required", "this route needs an admin token, not a plugin token")
    principal = jwt_admin or await authenticate_admin(core_of(request).sessions, token)
    if principal is None:
        raise unauthorized("invalid_admin_token", "the admin token is unknown, revoked or expired")
    if scope is not None and not principal.has(scope):
        raise forbidden("missing_scope", f"this action needs the {scope!r} scope")
    return principal


async def admin_or_self(
    request: Request, plugin_id: str, scope: str
) -> AdminPrincipal | PluginClaims:
    """An admin with `scope`, or the plugin `plugin_id` itself."""
    token = bearer(request)
    assert token is not None
    if looks_like_jwt(token):
        claims = await plugin_claims(request, token)
        if claims.plugin_id != plugin_id:
            raise forbidden("not_self", "a plugin may act only on its own record")
        return claims
    return await admin(request, scope, token)


def actor_of(principal: AdminPrincipal | PluginClaims) -> str:
    if isinstance(principal, AdminPrincipal):
        return principal.actor
    return principal.plugin_id


def require(condition: bool, status: int, code: str, detail: str) -> None:
    if not condition:
        raise Problem(status, detail, code=code)
