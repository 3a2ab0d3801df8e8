"""Typed errors: every problem+json answer of core becomes one exception.

Core answers every error as RFC 9457 `application/problem+json` with `type`, `title`,
`status`, `detail`, a stable `reason` code and, for validation, `errors` (each
`{path, code, message}`). `problem_error(response)` turns such an answer into the subclass
of `CoreError` that fits its status, so a plugin can write::

    try:
        await plugin.call("billing", "GET", "invoices/7")
    except PermissionDenied as exc:
        log.warning("refused: %s", exc.reason)   # e.g. "not_permitted"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

PROBLEM_MEDIA_TYPE = "application/problem+json"


class VivifiedError(Exception):
    """Base class of every error the SDK raises."""


@dataclass(frozen=True)
class ProblemItem:
    """One problem of a validation answer: a JSON pointer, a stable code, a message."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message} [{self.code}]"


class CoreError(VivifiedError):
    """Core (or a plugin behind it) answered an error.

    `status` is the HTTP status, `reason` the stable reason code (`not_permitted`,
    `endpoint_not_declared`, ... or "" when the answer carried none), `detail` the human
    explanation, `errors` every validation problem, `problem` the whole document.
    """

    def __init__(
        self,
        status: int,
        reason: str = "",
        detail: str = "",
        *,
        title: str = "",
        errors: tuple[ProblemItem, ...] = (),
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        self.title = title
        self.errors = errors
        self.problem = dict(problem or {})
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        head = f"{self.status}"
        if self.reason:
            head += f" {self.reason}"
        text = f"{head}: {self.detail or self.title or 'error'}"
        if self.errors:
            text += "".join(f"\n  - {item}" for item in self.errors)
        return text


class AuthenticationFailed(CoreError):
    """401: the token is missing, expired, revoked or forged."""


class PermissionDenied(CoreError):
    """403: policy refused the request (see `reason`)."""


class NotFound(CoreError):
    """404: no such plugin, route or endpoint (e.g. `endpoint_not_declared`)."""


class Conflict(CoreError):
    """409: e.g. an id held by another owner, or an alias several plugins share."""


class InvalidRequest(CoreError):
    """400 or 422: the body breaks the contract; `errors` lists every problem."""


class RateLimited(CoreError):
    """429: over the caller's rate limit; `retry_after` says when to try again."""


class ServiceUnavailable(CoreError):
    """5xx: the target or a part of core cannot answer now."""


class RegistrationRefused(CoreError):
    """Core refused the registration (bad credential, invalid manifest, conflict)."""


class CoreUnreachable(VivifiedError):
    """Core could not be reached within the retry budget."""


class NotRegistered(VivifiedError):
    """The operation needs a registered plugin (enter `async with plugin:` first)."""


def _class_for(status: int) -> type[CoreError]:
    if status == 401:
        return AuthenticationFailed
    if status == 403:
        return PermissionDenied
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status in (400, 413, 422):
        return InvalidRequest
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServiceUnavailable
    return CoreError


def _items(raw: Any) -> tuple[ProblemItem, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for entry in raw:
        if isinstance(entry, dict):
            out.append(
                ProblemItem(
                    str(entry.get("path", "")),
                    str(entry.get("code", "")),
                    str(entry.get("message", "")),
                )
            )
    return tuple(out)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def parse_problem(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error answer ({} when the body is not JSON)."""
    try:
        doc = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def problem_error(response: httpx.Response, cls: type[CoreError] | None = None) -> CoreError:
    """The typed exception for an error answer (`cls` overrides the status mapping)."""
    doc = parse_problem(response)
    reason = doc.get("reason") or ""
    if not reason:
        reason = response.headers.get("x-vivified-egress-error", "")
    return (cls or _class_for(response.status_code))(
        response.status_code,
        str(reason),
        str(doc.get("detail") or ""),
        title=str(doc.get("title") or response.reason_phrase),
        errors=_items(doc.get("errors")),
        problem=doc,
        retry_after=_retry_after(response),
    )


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the typed exception when `response` is an error (status >= 400)."""
    if response.status_code >= 400:
        raise problem_error(response)
