"""Console response headers, same-origin checks and the CSRF comparison (the sign-in limit is
the registry's: `registry.identity.sign_in_failures`)."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)
_REPLACED = {name for name, _ in HEADERS}
SCOPE_KEY = "vivified.console"


class ConsoleHeaders:
    """Every console response carries the security headers, whatever produced it; the
    console's state rides along in the ASGI scope for the endpoints."""

    def __init__(self, app: ASGIApp, console: object) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = self.console

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
                message["headers"] = kept + list(HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def same_origin(scope: Scope) -> bool:
    """False for a request a browser marks as sent from another site. (`Origin: null` is
    what a browser sends under `Referrer-Policy: no-referrer`; Sec-Fetch-Site decides then.)"""
    headers = Headers(scope=scope)
    if headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        return False
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return True
    return origin.split("://", 1)[-1] == headers.get("host", "")


def csrf_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the one sent."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
