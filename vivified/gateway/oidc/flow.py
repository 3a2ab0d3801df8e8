"""The console's OIDC routes: start the sign-in, finish it at the callback, come back from the
provider's logout. Every refusal is the console's error page and one audit record."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from vivified.gateway import auth
from vivified.gateway.console.context import PREFIX, client_address, console_of, error_page
from vivified.gateway.console.sessions import COOKIE as SESSION_COOKIE
from vivified.gateway.console.sessions import open_session
from vivified.gateway.middleware import request_id
from vivified.gateway.oidc import pending as pending_store
from vivified.gateway.oidc.claims import checked_email, mapped_scopes
from vivified.gateway.oidc.service import Oidc, oidc_of
from vivified.gateway.oidc.validation import TokenRefused
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.identity.admins import AdminError, AdminPrincipal
from vivified.registry.identity.oidc_admins import OidcIdentity, open_oidc_sign_in

log = logging.getLogger(__name__)
OIDC_PATH = f"{PREFIX}/oidc"
# Status of the console page for each refusal; anything else is 401.
STATUS = {
    "no_pending_sign_in": 400,
    "state_mismatch": 400,
    "missing_code": 400,
    "provider_unreachable": 502,
    "email_domain_not_allowed": 403,
    "email_not_verified": 403,
    "no_mapped_scopes": 403,
    "admin_disabled": 403,
}


ARRIVED = {
    "title": "Signed in",
    "message": "You are signed in. Opening the console…",
    "url": f"{PREFIX}/",
    "link": "Continue to the console",
}
LEAVING = {
    "title": "Signing out",
    "message": "You are signed out of Vivified; your single sign-on session ends at the provider.",
    "link": "Continue signing out at the provider",
}


class Refused(Exception):
    def __init__(self, code: str, message: str, actor: str = "anonymous", email: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.actor = actor
        self.email = email


async def _audit(
    request: Request, actor: str, decision: str, reason: str, status: int, **detail: Any
) -> None:
    await auth.core_of(request).audit.record(
        AuditEvent(
            actor=actor,
            lane="admin",
            action="console.login",
            target="console",
            decision=decision,
            reason=reason,
            request_id=request_id(request),
            status=status,
            detail={"client": client_address(request), "method": "oidc", **detail},
        )
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or console_of(request).settings.console_secure_cookies


def _not_configured(request: Request) -> Response:
    return error_page(request, 404, "oidc_not_configured", "single sign-on is not configured")


async def start(request: Request) -> Response:
    """Send the browser to the provider; remember the sign-in in the registry."""
    oidc = oidc_of(request)
    if oidc is None:
        return _not_configured(request)
    url, pending = await oidc.authorization()
    cookie = await pending_store.remember(auth.core_of(request).sessions, pending)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        pending_store.COOKIE,
        cookie,
        max_age=int(pending_store.LIFETIME),
        path=OIDC_PATH,
        httponly=True,
        samesite="lax",  # sent on the provider's cross-site redirect back (a top-level GET)
        secure=_secure(request),
    )
    return response


async def _identity(request: Request, oidc: Oidc) -> tuple[OidcIdentity, list[str]]:
    """Check the callback and the ID token; the identity and the scopes it maps to now."""
    core = auth.core_of(request)
    pending = await pending_store.take(core.sessions, request.cookies.get(pending_store.COOKIE, ""))
    if pending is None:
        raise Refused("no_pending_sign_in", "this sign-in expired or was already used; start again")
    params = request.query_params
    if not hmac.compare_digest(params.get("state", "").encode(), pending.state.encode()):
        raise Refused("state_mismatch", "the sign-in answer does not match this browser's sign-in")
    iss = params.get("iss")  # RFC 9207: the answer names its issuer (mix-up defence)
    if iss is not None and not hmac.compare_digest(iss.encode(), oidc.config.issuer.encode()):
        raise Refused("wrong_issuer", "the sign-in answer comes from another issuer")
    if params.get("error"):
        raise Refused("provider_refused", "the provider did not sign you in")
    code = params.get("code", "")
    if not code:
        raise Refused("missing_code", "the provider's answer carries no sign-in code")
    token = await oidc.exchange(code, pending)
    claims = await oidc.validator.id_token(
        token["id_token"], client_id=oidc.config.client_id, nonce=pending.nonce
    )
    email_claim = claims.get("email")
    who = OidcIdentity(
        oidc.config.issuer, claims["sub"], email_claim if isinstance(email_claim, str) else ""
    )
    try:
        checked_email(claims, oidc.config.allowed_email_domains)
    except TokenRefused as exc:
        raise Refused(exc.code, exc.message, f"admin:{who.user_name}", who.email) from exc
    scopes = mapped_scopes(claims, oidc.config.scopes_claim, oidc.config.scope_table)
    if not scopes:
        raise Refused(
            "no_mapped_scopes",
            "your account at the provider grants no access to Vivified",
            f"admin:{who.user_name}",
            who.email,
        )
    return who, scopes


async def _open(request: Request, who: OidcIdentity, scopes: list[str]) -> AdminPrincipal:
    console = console_of(request)
    try:
        return await open_oidc_sign_in(
            auth.core_of(request).sessions, who, scopes, console.settings.console_session_lifetime
        )
    except AdminError as exc:
        raise Refused(exc.code, exc.message, f"admin:{who.user_name}", who.email) from exc


async def callback(request: Request) -> Response:
    """Finish the sign-in: a console session with the scopes the provider's claim maps to."""
    oidc = oidc_of(request)
    if oidc is None:
        return _not_configured(request)
    try:
        try:
            who, scopes = await _identity(request, oidc)
        except TokenRefused as exc:
            raise Refused(exc.code, exc.message) from exc
        principal = await _open(request, who, scopes)
    except Refused as exc:
        status = STATUS.get(exc.code, 401)
        await _audit(request, exc.actor, "deny", exc.code, status, email=exc.email)
        response = error_page(request, status, exc.code, f"Sign-in refused: {exc.message}.")
        response.delete_cookie(pending_store.COOKIE, path=OIDC_PATH, httponly=True, samesite="lax")
        return response
    console = console_of(request)
    session_id, _row = await open_session(auth.core_of(request).sessions, principal, console.limits)
    await _audit(
        request, principal.actor, "allow", "signed_in", 303, email=who.email, scopes=scopes
    )
    # A page that moves on, not a redirect: this response ends a navigation that started at
    # the provider (another site), so a redirect would still be cross-site and the browser
    # would not send the new SameSite=Strict session cookie with it.
    done = console.render(request, "oidc_continue.html", ARRIVED)
    done.delete_cookie(pending_store.COOKIE, path=OIDC_PATH, httponly=True, samesite="lax")
    done.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(console.settings.console_session_lifetime),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return done


async def signed_out(_request: Request) -> Response:
    """Where the provider sends the browser after its logout."""
    return RedirectResponse(f"{PREFIX}/login?ended=signed_out", status_code=303)


def provider_logout_url(request: Request, principal: AdminPrincipal) -> str | None:
    """Where an OIDC user's sign-out continues: the provider's end-session endpoint, if any."""
    oidc = oidc_of(request)
    if oidc is None or not principal.oidc:
        return None
    return oidc.logout_url()


def sign_in_name(request: Request) -> str:
    """The provider's name for the sign-in button; empty when OIDC is not configured."""
    oidc = oidc_of(request)
    return oidc.display_name if oidc is not None else ""


ROUTES = [
    Route("/oidc/login", start, methods=["GET"]),
    Route("/oidc/callback", callback, methods=["GET"]),
    Route("/oidc/signed-out", signed_out, methods=["GET"]),
]
