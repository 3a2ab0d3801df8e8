"""What every console endpoint shares: the console's state, the signed-in admin, the form,
HTML rendering and the error pages (never problem+json, never a traceback)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from vivified.config.settings import Settings
from vivified.gateway import auth
from vivified.gateway.console.security import SCOPE_KEY, csrf_ok, same_origin
from vivified.gateway.console.sessions import COOKIE, Lifetimes, close_session, find_session
from vivified.gateway.core import Core
from vivified.gateway.problems import Problem
from vivified.registry.identity.admins import AdminPrincipal, authenticate_admin_token_id
from vivified.registry.store.tables import ConsoleSession

log = logging.getLogger(__name__)

PREFIX = "/console"
FORM_CAP = 64 * 1024
FORM_FIELDS = 64
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
# What each navigation entry needs; the layout shows only the ones the admin may open.
NAV: tuple[tuple[str, str, str | None], ...] = (
    ("Overview", "/console/", None),
    ("Plugins", "/console/plugins", "plugins:manage"),
    ("Registration tokens", "/console/tokens", "plugins:manage"),
    ("Audit", "/console/audit", "audit:read"),
    ("Egress", "/console/egress", "egress:manage"),
    ("Revisions", "/console/revisions", "egress:manage"),
    ("Grants", "/console/grants", "grants:manage"),
    ("Events", "/console/events", "plugins:manage"),
    ("Admins", "/console/admins", "admins:manage"),
    ("Keys", "/console/keys", "keys:manage"),
    ("Manifest check", "/console/manifest", None),
)


class ConsoleError(Exception):
    """Answer with the console's error page: `status`, a stable `code`, a sentence."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


class Console:
    """The console's own state, one per app: templates, settings and session lifetimes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.templates = Environment(
            loader=PackageLoader("vivified.gateway.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.limits = Lifetimes(settings.console_idle_timeout, settings.console_session_lifetime)

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            request_path=request.url.path, **context
        )
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


def console_of(request: Request) -> Console:
    console: Console = request.scope[SCOPE_KEY]
    return console


@dataclass
class Ctx:
    """One signed-in request."""

    request: Request
    console: Console
    core: Core
    principal: AdminPrincipal
    session: ConsoleSession
    form: dict[str, str] = field(default_factory=dict)

    @property
    def csrf(self) -> str:
        return self.session.csrf_secret

    def nav(self) -> list[tuple[str, str]]:
        return [(name, href) for name, href, scope in NAV if scope is None or self.has(scope)]

    def has(self, scope: str) -> bool:
        return self.principal.has(scope)

    def render(
        self, template: str, status: int = 200, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> HTMLResponse:
        context = {"ctx": self, "admin": self.principal.name, "csrf": self.csrf, **kw}
        return self.console.render(self.request, template, context, status, headers)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def read_form(request: Request) -> dict[str, str]:
    """A bounded urlencoded form (the first value of each field)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != FORM_MEDIA_TYPE:
        raise ConsoleError(415, "unsupported_media_type", "send the form as a browser does")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > FORM_CAP:
            raise ConsoleError(413, "form_too_large", "the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConsoleError(400, "bad_form", "the form could not be read") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def error_page(
    request: Request,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    ctx: Ctx | None = None,
) -> HTMLResponse:
    """The console's error page; inside a session it keeps the navigation."""
    context: dict[str, Any] = {
        "status": status,
        "title": HTTPStatus(status).phrase,
        "code": code,
        "detail": detail,
        "ctx": ctx,
        "admin": ctx.principal.name if ctx else None,
        "csrf": ctx.csrf if ctx else None,
    }
    return console_of(request).render(request, "error.html", context, status, headers)


def to_login(request: Request, reason: str = "") -> Response:
    """Back to the sign-in page (htmx follows `HX-Redirect`); the cookie is cleared."""
    target = f"{PREFIX}/login" + (f"?ended={reason}" if reason else "")
    if request.headers.get("hx-request") == "true":
        response: Response = Response(status_code=204, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    if request.cookies.get(COOKIE):
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


async def signed_in(request: Request) -> Ctx | str | None:
    """The request's session and admin; None without a session, or why it ended."""
    console = console_of(request)
    core = auth.core_of(request)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    row = await find_session(core.sessions, cookie, console.limits)
    if row is None:
        return "expired"
    principal = await authenticate_admin_token_id(core.sessions, row.token_id)
    if principal is None:  # token revoked or expired, or the admin disabled: the session dies
        await close_session(core.sessions, row.id)
        return "revoked"
    return Ctx(request, console, core, principal, row)


Handler = Callable[[Ctx], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def page(scope: str | None = None) -> Callable[[Handler], Endpoint]:
    """A console endpoint: signed in, `scope` held, and for POST a same-origin form with the
    session's CSRF token (field `csrf` or header `X-CSRF-Token`). Refusals are HTML pages."""

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            ctx: Ctx | None = None
            try:
                found = await signed_in(request)
                if not isinstance(found, Ctx):
                    return to_login(request, found or "")
                ctx = found
                if scope is not None and not ctx.has(scope):
                    raise ConsoleError(403, "missing_scope", f"this page needs the {scope} scope")
                if request.method == "POST":
                    if not same_origin(request.scope):
                        raise ConsoleError(403, "cross_origin", "the form came from another site")
                    ctx.form = await read_form(request)
                    given = ctx.form.get("csrf") or request.headers.get("x-csrf-token")
                    if not csrf_ok(ctx.csrf, given):
                        raise ConsoleError(
                            403, "csrf_failed", "the form's CSRF token is missing or wrong"
                        )
                return await handler(ctx)
            except ConsoleError as exc:
                return error_page(request, exc.status, exc.code, exc.detail, exc.headers, ctx)
            except Problem as exc:
                return error_page(
                    request, exc.status, exc.code or "error", exc.detail, exc.headers, ctx
                )
            except Exception as exc:  # never a traceback to the browser
                log.error("console error", exc_info=exc, extra={"path": request.url.path})
                return error_page(
                    request, 500, "internal_error", "internal error; see the server log", ctx=ctx
                )

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return wrap
