"""ASGI middleware: only calls that core vouches for reach your API.

Core adds `X-Vivified-Assertion` (a short-lived EdDSA JWT, `aud` = your plugin id, `sub` =
the caller, bound to the method and path) to every operator-lane call it forwards. The
middleware checks it on every request under `prefix` (default `/api/`) and answers 401
problem+json when it is missing, forged, expired or about another request. Verified calls
carry the caller's plugin id in `scope["state"]["vivified_caller"]` (Starlette/FastAPI:
`request.state.vivified_caller`) and the claims in `scope["state"]["vivified_claims"]`::

    app = Starlette(routes=[...])
    app.add_middleware(AssertionMiddleware, audience="billing",
                       jwks=JwksCache("http://core:8000"))

Pure ASGI (no Starlette import): it wraps any ASGI 3 application.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from vivified_sdk.assertion import InvalidAssertion
from vivified_sdk.jwks import JwksCache

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ASSERTION_HEADER = b"x-vivified-assertion"
PROBLEM_TYPE = "https://vivified.dev/problems/"


def header_values(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope.get("headers", []) if k.lower() == name]


async def send_problem(send: Send, status: int, reason: str, detail: str) -> None:
    """Answer an RFC 9457 problem document (never a traceback)."""
    title = HTTPStatus(status).phrase
    body = json.dumps(
        {
            "type": PROBLEM_TYPE + reason,
            "title": title,
            "status": status,
            "detail": detail,
            "reason": reason,
        },
        separators=(",", ":"),
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'VivifiedAssertion realm="vivified"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def verify_scope(
    scope: Scope,
    jwks: JwksCache,
    audience: str,
    *,
    base_path: str = "",
    check_path: bool = True,
) -> dict[str, Any]:
    """Verify the assertion of the request in `scope`; returns the claims or raises
    InvalidAssertion. `base_path` is the path prefix of your `base_url` (core's assertion
    names the path without it)."""
    values = header_values(scope, ASSERTION_HEADER)
    if not values:
        raise InvalidAssertion("missing X-Vivified-Assertion")
    if len(values) > 1:
        raise InvalidAssertion("more than one X-Vivified-Assertion")
    try:
        token = values[0].decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidAssertion("malformed assertion") from exc
    path: str | None = None
    if check_path:
        path = request_path(scope, base_path)
    method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
    return await jwks.verify(token, audience=audience, method=method, path=path)


def request_path(scope: Scope, base_path: str = "") -> str:
    """The request's path as core names it in the assertion: decoded, without `base_path`."""
    raw = scope.get("raw_path")
    path = unquote(raw.decode("latin-1").split("?", 1)[0]) if raw else str(scope.get("path", ""))
    base = base_path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        path = path[len(base) :] or "/"
    return path


class AssertionMiddleware:
    """Verify `X-Vivified-Assertion` on every HTTP/WebSocket request under `prefix`.

    `audience` is your plugin id; `jwks` a shared `JwksCache` of core's keys; `base_path` the
    path part of your `base_url` if it has one. Requests outside `prefix` pass untouched
    (e.g. `/health`). Refusals are 401 problem+json with `reason` `invalid_assertion`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        audience: str,
        jwks: JwksCache,
        prefix: str = "/api/",
        base_path: str = "",
    ) -> None:
        if not audience:
            raise ValueError("audience (your plugin id) is required")
        self.app = app
        self.audience = audience
        self.jwks = jwks
        self.prefix = prefix
        self.base_path = base_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not request_path(scope, self.base_path).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        try:
            claims = await verify_scope(scope, self.jwks, self.audience, base_path=self.base_path)
        except InvalidAssertion as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send_problem(send, 401, "invalid_assertion", str(exc))
            return
        state = scope.setdefault("state", {})
        state["vivified_caller"] = claims["sub"]
        state["vivified_claims"] = claims
        await self.app(scope, receive, send)
