"""Pure ASGI middleware: a request id for every request and a structured access log."""

from __future__ import annotations

import logging
import os
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vivified.config.logs import bind, unbind
from vivified.gateway.tracing import begin

access_log = logging.getLogger("vivified.access")

REQUEST_ID_HEADER = b"x-vivified-request-id"


def request_id(request: Request) -> str:
    """The id RequestContext gave this request (never the caller's)."""
    rid: str = request.scope.get("state", {}).get("request_id", "")
    return rid


class RequestContext:
    """Assigns a fresh request id (never the caller's) and logs method, path, status, latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = rid
        bound = bind(rid, begin(scope).trace_id)  # every log line of this request names both
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER
                ]
                headers.append((REQUEST_ID_HEADER, rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):  # skip building the record when not logged
                log_access(scope, rid, status, started)
            unbind(bound)


def log_access(scope: Scope, rid: str, status: int, started: float) -> None:
    """One access-log line: method, path (never the query string: it may hold secrets),
    status and latency."""
    access_log.info(
        "request",
        extra={
            "request_id": rid,
            "method": scope.get("method", ""),
            "path": scope.get("path", ""),
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )
