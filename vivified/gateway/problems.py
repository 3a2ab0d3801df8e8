"""RFC 9457 problem details: the one shape of every error core answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://vivified.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a route to answer with problem+json."""

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        code: str | None = None,
        title: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.title = title or HTTPStatus(status).phrase
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        slug = self.code or HTTPStatus(self.status).phrase.lower().replace(" ", "-")
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.code:
            doc["reason"] = self.code
        if self.errors is not None:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc

    def response(self) -> Response:
        return problem_response(self.body(), self.status, self.headers)


def problem_response(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """Serialise a problem document."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def unauthorized(code: str, detail: str) -> Problem:
    return Problem(401, detail, code=code, headers={"WWW-Authenticate": 'Bearer realm="vivified"'})


def forbidden(code: str, detail: str) -> Problem:
    return Problem(403, detail, code=code)


def not_found(detail: str = "no such resource") -> Problem:
    return Problem(404, detail, code="not_found")


async def handle_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def handle_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return Problem(exc.status_code, detail, headers=headers).response()


async def handle_server_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log (without request bodies or headers), never to the client.
    log.error(
        "unhandled error", exc_info=exc, extra={"path": request.url.path, "method": request.method}
    )
    return Problem(500, "internal error; see the server log", code="internal_error").response()


EXCEPTION_HANDLERS: dict[Any, Any] = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    Exception: handle_server_error,
}


def direct(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """`endpoint` as a bare ASGI app, for the busiest route (POST /events): the same request
    object and the same answers to Problem, HTTPException and any other exception as behind
    Starlette's router and exception middleware, without their layers around every call."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Problem as exc:
            response = exc.response()
        except HTTPException as exc:
            response = await handle_http_exception(request, exc)
        except Exception as exc:  # never a traceback to the caller
            response = await handle_server_error(request, exc)
        await response(scope, receive, send)

    return app
