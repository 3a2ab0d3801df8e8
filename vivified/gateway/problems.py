"""RFC 9457 problem details: the one shape of every error core answers, from one place.

Domain errors (`vivified.registry.errors.DomainError`: RegistryError, TokenError,
AdminError, ConfigError, LaneError) carry a code, never a status. Here, and only here:
one `{code: status}` table per domain (`STATUS_TABLES`, plus `EVENT_STATUS` for the event
lane's policy reasons), the headers a status needs (401 `WWW-Authenticate`, 503
`Retry-After`), and one serialiser (`problem_document` + `problem_json`) behind `Problem`,
the Starlette handler for domain errors, `direct()` and the operator lane's raw answer.

Audit records of refusals keep the status the client saw: registry and config code is handed
`status_of` as its `Outcome` (see `vivified.registry.errors`) instead of knowing HTTP.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vivified.config.documents import ConfigError
from vivified.config.problem_types import MEDIA_TYPE as MEDIA_TYPE
from vivified.config.problem_types import PROBLEM_TYPE_BASE as PROBLEM_TYPE_BASE
from vivified.gateway.operator.errors import LaneError
from vivified.registry.errors import DomainError
from vivified.registry.identity.admins import AdminError
from vivified.registry.identity.tokens import TOKEN_ERROR_CODES, TokenError
from vivified.registry.plugins.reregistration import RegistryError

log = logging.getLogger(__name__)

WWW_AUTHENTICATE = 'Bearer realm="vivified"'
DEFAULT_RETRY_AFTER = 5.0

# -- status tables: one per domain -------------------------------------------------------------

TOKEN_STATUS: Mapping[str, int] = dict.fromkeys(TOKEN_ERROR_CODES, 401)
REGISTRY_STATUS: Mapping[str, int] = {
    "missing_token": 401,
    "invalid_registration_token": 401,
    "registration_token_bound": 403,
    "token_for_other_plugin": 403,
    "not_found": 404,
    "plugin_id_taken": 409,
    "invalid_manifest": 422,
}
ADMIN_STATUS: Mapping[str, int] = {
    "missing_scope": 403,
    "admin_disabled": 403,  # an OIDC user disabled in core (vivified.gateway.oidc)
    "not_own_token": 403,
    "scope_not_held": 403,
    "outlives_own_token": 403,
    "not_found": 404,
    "name_taken": 409,
    "unknown_scope": 422,
    "user_lacks_scope": 422,
    "weak_admin_token": 422,
}
CONFIG_STATUS: Mapping[str, int] = {
    "not_found": 404,
    "read_only_member": 409,
    "stale_version": 412,
    "invalid_body": 422,
    "invalid_allowlist": 422,
    "invalid_limits": 422,
    "invalid_egress_document": 422,
}
_RAW_PATH = ("path_too_long", "not_absolute", "control_character", "backslash", "bad_encoding")
LANE_STATUS: Mapping[str, int] = {
    **TOKEN_STATUS,  # a refused token is a 401 on every lane
    **dict.fromkeys((*_RAW_PATH, "dot_segment", "empty_segment", "encoded_slash"), 400),
    "ambiguous_framing": 400,
    "bad_content_length": 400,
    # the operator policy (vivified.policy.operator.decide_call)
    "unknown_caller": 403,
    "caller_not_active": 403,
    "not_permitted": 403,
    "phi_trait_required": 403,
    "pii_trait_required": 403,
    "caller_unhealthy": 403,
    "unknown_target": 404,
    "target_not_active": 503,
    "target_unhealthy": 503,
    # routing and the lane itself
    "not_found": 404,
    "endpoint_not_declared": 404,
    "ambiguous_contract": 409,
    "body_too_large": 413,
    "internal_error": 500,
    "upstream_refused": 502,
    "upstream_failed": 502,
    "upstream_bad_response": 502,  # malformed or oversized response head (operator.exchange)
    "audit_unavailable": 503,
    "circuit_open": 503,
    "upstream_timeout": 504,
    "rate_limited": 429,  # fair sharing (vivified.gateway.operator.limits)
    "concurrency_limited": 429,
}
# The event lane's publish refusals (vivified.policy.events.decide_publish).
EVENT_STATUS: Mapping[str, int] = {
    "unknown_event_type": 422,
    "publisher_not_active": 403,
    "not_declared": 403,
    "publisher_unhealthy": 403,
}
STATUS_TABLES: Mapping[type[DomainError], Mapping[str, int]] = {
    RegistryError: REGISTRY_STATUS,
    TokenError: TOKEN_STATUS,
    AdminError: ADMIN_STATUS,
    ConfigError: CONFIG_STATUS,
    LaneError: LANE_STATUS,
}
# A code missing from its table (a bug `tests/gateway/test_error_model.py` looks for).
_FALLBACK: Mapping[type[DomainError], int] = {TokenError: 401, LaneError: 403}


def status_of(exc: DomainError) -> int:
    """The HTTP status that answers `exc`."""
    for cls in type(exc).__mro__:
        table = STATUS_TABLES.get(cls)
        if table is not None:
            return table.get(exc.code) or _FALLBACK.get(cls, 422)
    return 500


def event_status(reason: str) -> int:
    """The status of a refused publish (an event-policy reason)."""
    return EVENT_STATUS.get(reason, 403)


def problem_headers(status: int, retry_after: float | None = None) -> dict[str, str]:
    """What a status needs besides the body: 401 says how to authenticate, 503 when to retry."""
    if status == 401:
        return {"www-authenticate": WWW_AUTHENTICATE}
    if status in (429, 503):
        wait = retry_after if retry_after is not None else DEFAULT_RETRY_AFTER
        return {"retry-after": str(max(1, math.ceil(wait)))}
    return {}


# -- the one serialiser ------------------------------------------------------------------------


def problem_document(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`{type, title, status, detail[, reason][, errors]}`: `type` names the reason code (or
    the status phrase when there is none)."""
    slug = code or HTTPStatus(status).phrase.lower().replace(" ", "-")
    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if code:
        doc["reason"] = code
    if errors is not None:
        doc["errors"] = list(errors)
    if extra:
        doc.update(extra)
    return doc


def problem_json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


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

    @classmethod
    def of(cls, exc: DomainError) -> Problem:
        """The answer to a domain error: its status from the tables, headers by status."""
        status = status_of(exc)
        retry_after = exc.retry_after if isinstance(exc, LaneError) else None
        return cls(
            status,
            exc.message,
            code=exc.code,
            errors=exc.errors,
            headers=problem_headers(status, retry_after),
        )

    def body(self) -> dict[str, Any]:
        return problem_document(
            self.status,
            self.detail,
            code=self.code,
            title=self.title,
            errors=self.errors,
            extra=self.extra,
        )

    def response(self) -> Response:
        return problem_response(self.body(), self.status, self.headers)


def problem_response(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """Serialise a problem document."""
    return Response(
        problem_json(body), status_code=status, media_type=MEDIA_TYPE, headers=dict(headers or {})
    )


async def send_problem(send: Send, exc: DomainError, request_id: str = "") -> None:
    """Answer `exc` straight onto the ASGI channel (the operator lane's fast path; a refusal
    there is never cached)."""
    problem = Problem.of(exc)
    body = problem_json(problem.body())
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"cache-control", b"no-store")]
    headers += [(k.encode(), v.encode()) for k, v in problem.headers.items()]
    headers.append((b"content-length", str(len(body)).encode()))
    if request_id:
        headers.append((b"x-vivified-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def unauthorized(code: str, detail: str) -> Problem:
    return Problem(401, detail, code=code, headers=problem_headers(401))


def forbidden(code: str, detail: str) -> Problem:
    return Problem(403, detail, code=code)


def not_found(detail: str = "no such resource") -> Problem:
    return Problem(404, detail, code="not_found")


async def handle_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def handle_domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return Problem.of(exc).response()


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
    DomainError: handle_domain_error,
    HTTPException: handle_http_exception,
    Exception: handle_server_error,
}


def direct(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """`endpoint` as a bare ASGI app, for the busiest route (POST /events): the same request
    object and the same answers to Problem, DomainError, HTTPException and any other
    exception as behind Starlette's router and exception middleware, without their layers
    around every call."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Problem as exc:
            response = exc.response()
        except DomainError as exc:
            response = Problem.of(exc).response()
        except HTTPException as exc:
            response = await handle_http_exception(request, exc)
        except Exception as exc:  # never a traceback to the caller
            response = await handle_server_error(request, exc)
        await response(scope, receive, send)

    return app
