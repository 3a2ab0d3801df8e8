"""Refusals of the egress proxy: status by reason code, problem+json body, reason header.

Most HTTP clients show only the status line of a refused CONNECT (the body and headers of a
non-2xx CONNECT answer are dropped by curl, requests, urllib, httpx, undici, Java...), so the
reason phrase carries the reason code and the host too: `403 Forbidden (host_not_allowed:
evil.example.com)`. The body is RFC 9457 problem+json with the same `type` scheme as the
gateway (`vivified.config.problem_types`).
"""

from __future__ import annotations

import json
import re

from mitmproxy import http

from vivified.config.problem_types import MEDIA_TYPE, problem_type
from vivified.egress.auth import PROXY_AUTHENTICATE
from vivified.egress.flow_state import DENIED, outcome
from vivified.registry.identity.tokens import TOKEN_ERROR_CODES

ERROR_HEADER = "X-Vivified-Egress-Error"

_STATUS = {
    "missing_credentials": 407,
    "malformed_credentials": 407,
    "invalid_token": 407,
    "credential_mismatch": 407,
    "sni_mismatch": 421,
    "host_mismatch": 421,
    "authority_mismatch": 400,
    "missing_host": 400,
    "bad_request": 400,
    "dns_failed": 502,
    "upstream_connect_failed": 502,
    "upstream_failed": 502,
    "response_too_large": 502,
    "dns_timeout": 504,
    "upstream_timeout": 504,
    **dict.fromkeys(TOKEN_ERROR_CODES, 407),
}
_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    421: "Misdirected Request",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


_PHRASE_HOST = re.compile(r"[A-Za-z0-9._:\[\]-]{1,255}")


def reason_phrase(status: int, reason: str, host: str = "") -> str:
    """`Forbidden (host_not_allowed: evil.example.com)`: what a client shows of a refusal.

    The host is left out when it holds anything but name and address characters (the phrase
    goes on the status line as it is)."""
    title = _TITLES.get(status, "Error")
    if host and _PHRASE_HOST.fullmatch(host):
        return f"{title} ({reason}: {host})"
    return f"{title} ({reason})"


def status_for(reason: str) -> int:
    """The HTTP status for a reason code; policy denials are 403."""
    return _STATUS.get(reason, 403)


def error_body(status: int, reason: str, detail: str) -> bytes:
    """The problem+json body, with `reason` as the stable code."""
    return json.dumps(
        {
            "type": problem_type(reason),
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
            "reason": reason,
        }
    ).encode()


def error_headers(status: int, reason: str, length: int) -> dict[str, str]:
    """Headers of an error answer (407 adds the challenge)."""
    headers = {
        "Content-Type": MEDIA_TYPE,
        "Content-Length": str(length),
        ERROR_HEADER: reason,
        "Cache-Control": "no-store",
    }
    if status == 407:
        headers["Proxy-Authenticate"] = PROXY_AUTHENTICATE
    return headers


def error_response(
    reason: str, detail: str, status: int | None = None, host: str = ""
) -> http.Response:
    """A complete mitmproxy response for a refusal (`host`: the destination asked for)."""
    code = status or status_for(reason)
    body = error_body(code, reason, detail)
    response = http.Response.make(code, body, error_headers(code, reason, len(body)))
    response.reason = reason_phrase(code, reason, host)
    return response


def asked_host(flow: http.HTTPFlow) -> str:
    """The destination the client asked for (its record's host: never the pinned address)."""
    o = outcome(flow)
    return o.host if o is not None and o.host else flow.request.host


def refuse(flow: http.HTTPFlow, reason: str, detail: str) -> None:
    """The proxy answers the flow itself: problem response, `DENIED` tag, the outcome's verdict.

    Later addons leave a refused flow alone; the audit addon records it in the same hook."""
    status = status_for(reason)
    flow.response = error_response(reason, detail, status, asked_host(flow))
    flow.metadata[DENIED] = True
    o = outcome(flow)
    if o is not None:
        o.decision, o.reason, o.status = "deny", reason, status
