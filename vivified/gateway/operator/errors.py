"""Refusals on the operator lane, answered as problem+json straight onto the ASGI channel."""

from __future__ import annotations

import json
import math
from http import HTTPStatus

from starlette.types import Send

from vivified.gateway.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE

DEFAULT_RETRY_AFTER = 5.0


class LaneError(Exception):
    """A refusal with its status and stable reason code; 503s carry `Retry-After`."""

    def __init__(
        self, status: int, reason: str, detail: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", MEDIA_TYPE.encode()), (b"cache-control", b"no-store")]
        if self.status == 503:
            wait = self.retry_after if self.retry_after is not None else DEFAULT_RETRY_AFTER
            headers.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
        if self.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="vivified"'))
        return headers

    def body(self) -> bytes:
        doc = {
            "type": PROBLEM_TYPE_BASE + self.reason,
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            "reason": self.reason,
        }
        return json.dumps(doc, separators=(",", ":")).encode()


async def send_problem(send: Send, exc: LaneError, request_id: str = "") -> None:
    body = exc.body()
    headers = [*exc.headers(), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-vivified-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
