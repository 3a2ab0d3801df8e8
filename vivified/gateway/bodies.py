"""Reading request bodies: size caps (413) and JSON parsing (400) at the edge."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from vivified.gateway.problems import Problem


async def read_capped(request: Request, cap: int) -> bytes:
    """The whole body, refusing more than `cap` bytes without reading past the cap."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > cap:
                raise Problem(413, f"the body is larger than {cap} bytes", code="body_too_large")
        except ValueError as exc:
            raise Problem(400, "invalid Content-Length", code="bad_request") from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise Problem(413, f"the body is larger than {cap} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, cap: int, *, allow_empty: bool = False) -> Any:
    """Parse a JSON body; malformed JSON is 400, a wrong media type 415."""
    raw = await read_capped(request, cap)
    if not raw.strip():
        if allow_empty:
            return {}
        raise Problem(400, "the request body is empty; send a JSON document", code="malformed_json")
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise Problem(415, "send the body as application/json", code="unsupported_media_type")
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise Problem(400, f"malformed JSON: {exc}", code="malformed_json") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number; one too large for a float (1e400) would become infinity, which core
    could never write back as JSON (an event stored with it would reach no subscriber)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


def json_object(value: Any, what: str = "body") -> dict[str, Any]:
    """Require a JSON object (422 otherwise)."""
    if not isinstance(value, dict):
        raise Problem(
            422,
            f"the {what} must be a JSON object",
            code="invalid_body",
            errors=[{"path": "", "code": "not_an_object", "message": "expected a JSON object"}],
        )
    return value
