"""Refusals of the egress proxy: status by reason code, problem+json body, reason header."""

from __future__ import annotations

import json

from mitmproxy import http

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


def status_for(reason: str) -> int:
    """The HTTP status for a reason code; policy denials are 403."""
    return _STATUS.get(reason, 403)


def error_body(status: int, reason: str, detail: str) -> bytes:
    """The problem+json body, with `reason` as the stable code."""
    return json.dumps(
        {
            "type": f"urn:vivified:egress:{reason}",
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
            "reason": reason,
        }
    ).encode()


def error_headers(status: int, reason: str, length: int) -> dict[str, str]:
    """Headers of an error answer (407 adds the challenge)."""
    headers = {
        "Content-Type": "application/problem+json",
        "Content-Length": str(length),
        ERROR_HEADER: reason,
        "Cache-Control": "no-store",
    }
    if status == 407:
        headers["Proxy-Authenticate"] = PROXY_AUTHENTICATE
    return headers


def error_response(reason: str, detail: str, status: int | None = None) -> http.Response:
    """A complete mitmproxy response for a refusal."""
    code = status or status_for(reason)
    body = error_body(code, reason, detail)
    return http.Response.make(code, body, error_headers(code, reason, len(body)))


def refuse(flow: http.HTTPFlow, reason: str, detail: str) -> None:
    """The proxy answers the flow itself: problem response, `DENIED` tag, the outcome's verdict.

    Later addons leave a refused flow alone; the audit addon records it in the same hook."""
    status = status_for(reason)
    flow.response = error_response(reason, detail, status)
    flow.metadata[DENIED] = True
    o = outcome(flow)
    if o is not None:
        o.decision, o.reason, o.status = "deny", reason, status
