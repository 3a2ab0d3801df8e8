"""Sign-in with an admin API token, and sign-out. Failed sign-ins are limited and audited."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vivified.gateway import auth
from vivified.gateway.console.context import (
    PREFIX,
    ConsoleError,
    Ctx,
    client_address,
    console_of,
    error_page,
    page,
    read_form,
    signed_in,
)
from vivified.gateway.console.security import same_origin
from vivified.gateway.console.sessions import COOKIE, close_session, open_session
from vivified.gateway.middleware import request_id
from vivified.gateway.oidc.flow import LEAVING, provider_logout_url, sign_in_name
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.identity import sign_in_failures
from vivified.registry.identity.admins import authenticate_admin
from vivified.registry.plugins.record import looks_like_jwt

MAX_TOKEN_LENGTH = 512
ENDED = {
    "expired": "Your session ended. Sign in again.",
    "revoked": "Your session ended: its admin token is no longer valid.",
    "signed_out": "You are signed out.",
}


async def _audit(
    request: Request, actor: str, decision: str, reason: str, status: int, action: str
) -> None:
    await auth.core_of(request).audit.record(
        AuditEvent(
            actor=actor,
            lane="admin",
            action=action,
            target="console",
            decision=decision,
            reason=reason,
            request_id=request_id(request),
            status=status,
            detail={"client": client_address(request)},
        )
    )


def _login_page(request: Request, status: int = 200, error: str = "", **headers: str) -> Response:
    notice = ENDED.get(request.query_params.get("ended", ""), "")
    context = {"error": error, "notice": notice, "oidc_name": sign_in_name(request)}
    return console_of(request).render(request, "login.html", context, status, headers)


async def login_form(request: Request) -> Response:
    """The sign-in page (or the overview when already signed in)."""
    if isinstance(await signed_in(request), Ctx):
        return RedirectResponse(f"{PREFIX}/", status_code=303)
    return _login_page(request)


async def _refuse(request: Request, status: int, reason: str, message: str) -> Response:
    await sign_in_failures.failed(auth.core_of(request).sessions, client_address(request))
    await _audit(request, "anonymous", "deny", reason, status, "console.login")
    return _login_page(request, status, message)


async def login(request: Request) -> Response:
    """Check the admin token, open a session, set the cookie. The token is never echoed."""
    console = console_of(request)
    core = auth.core_of(request)
    client = client_address(request)
    wait = await sign_in_failures.retry_after(core.sessions, client)
    if wait:
        await _audit(request, "anonymous", "deny", "rate_limited", 429, "console.login")
        return error_page(
            request,
            429,
            "rate_limited",
            f"Too many failed sign-ins from your address. Try again in {wait} seconds.",
            {"Retry-After": str(wait)},
        )
    if not same_origin(request.scope):
        return error_page(request, 403, "cross_origin", "the form came from another site")
    try:
        form = await read_form(request)
    except ConsoleError as exc:
        return error_page(request, exc.status, exc.code, exc.detail)
    token = form.get("token", "").strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return await _refuse(request, 401, "invalid_admin_token", "That admin token is not valid.")
    if looks_like_jwt(token):
        return await _refuse(
            request, 401, "admin_required", "That is a plugin token; sign in with an admin token."
        )
    principal = await authenticate_admin(core.sessions, token)
    if principal is None:
        return await _refuse(
            request, 401, "invalid_admin_token", "That admin token is unknown, revoked or expired."
        )
    session_id, _row = await open_session(core.sessions, principal, console.limits)
    await _audit(request, principal.actor, "allow", "signed_in", 303, "console.login")
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    secure = request.url.scheme == "https" or console.settings.console_secure_cookies
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(console.settings.console_session_lifetime),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    return response


@page()
async def logout(ctx: Ctx) -> Response:
    """End the session (POST with the CSRF token)."""
    await close_session(ctx.core.sessions, ctx.session.id)
    await _audit(ctx.request, ctx.principal.actor, "allow", "signed_out", 303, "console.logout")
    # An OIDC user's sign-out continues at the provider (RP-initiated logout), if it offers it:
    # a page that moves on (a redirect would break the CSP's `form-action 'self'`).
    provider = provider_logout_url(ctx.request, ctx.principal)
    if provider:
        response: Response = ctx.console.render(
            ctx.request, "oidc_continue.html", LEAVING | {"url": provider}
        )
    else:
        response = RedirectResponse(f"{PREFIX}/login?ended=signed_out", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response
