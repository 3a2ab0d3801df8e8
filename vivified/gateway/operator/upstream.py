"""Sending an operator-lane request to its target and streaming the answer back.

HTTP requests go through `upstream_pool` (a lean keep-alive HTTP/1.1 client, chosen by
measurement: see README, "Operator lane performance"); WebSocket upgrades through an aiohttp
session (`new_client`). Bodies stream in both directions with flow control, never buffered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
from starlette.types import Receive, Scope, Send

from vivified.config.settings import Settings
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.operator.exchange import (
    ConnectFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
)
from vivified.gateway.operator.headers import header_value, request_headers, response_headers
from vivified.gateway.operator.pool import Origin, UpstreamPool, base_path
from vivified.registry.store.snapshot import PluginView

if TYPE_CHECKING:
    from vivified.gateway.core import Core
    from vivified.gateway.operator.lane import Call


SMALL_BODY = 64 * 1024  # responses up to this size (declared) are sent in one piece


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


def new_pool(settings: Settings) -> UpstreamPool:
    """The HTTP client of the lane: one pool per process, shared by all targets."""
    return UpstreamPool(
        limit=settings.upstream_connections,
        connect_timeout=settings.upstream_timeout,
        read_timeout=settings.upstream_timeout,
    )


def new_client(settings: Settings) -> aiohttp.ClientSession:
    """The WebSocket client: one pooled aiohttp session per process."""
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_connections, limit_per_host=0, keepalive_timeout=30
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # never carry one caller's cookies to another
        auto_decompress=False,  # bytes pass through as the target sent them
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=settings.upstream_timeout, sock_read=settings.upstream_timeout
        ),
        trust_env=False,
    )


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length; both framings at once, or a bad length, are refused."""
    headers = scope["headers"]
    lengths = header_value(headers, b"content-length")
    if header_value(headers, b"transfer-encoding"):
        if lengths:
            raise LaneError("ambiguous_framing", "send Content-Length or chunked, not both")
        return None
    if not lengths:
        return 0
    if len(set(lengths)) != 1 or not lengths[0].isdigit():
        raise LaneError("bad_content_length", "the Content-Length header is invalid")
    return int(lengths[0])


async def forward(
    core: Core,
    call: Call,
    scope: Scope,
    receive: Receive,
    send: Send,
    target: PluginView,
    rest: bytes,
    path: str,
    body_done: asyncio.Event,
) -> None:
    cap = core.settings.max_body_bytes
    declared = _declared_length(scope)
    if declared is not None and declared > cap:
        raise LaneError("body_too_large", f"the body is larger than {cap} bytes")
    body_error = ""

    async def body() -> AsyncIterator[bytes]:
        nonlocal body_error
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    body_error = "client_disconnected"
                    raise ClientGone
                chunk = message.get("body", b"")
                if chunk:
                    call.bytes_in += len(chunk)
                    if call.bytes_in > cap:
                        body_error = "body_too_large"
                        raise BodyTooLarge
                    if call.request_hash is not None:  # `complete` audit level
                        call.request_hash.update(chunk)
                    yield chunk
                if not message.get("more_body", False):
                    break
        finally:
            body_done.set()

    pool = core.pool
    origin = pool.origin(target.base_url)
    head = _request_head(core, call, scope, target, origin, rest, path, declared)
    data: AsyncIterator[bytes] | None = None
    if declared is None or declared > 0:
        data = body()
    else:
        body_done.set()
    started = False
    sent = time.perf_counter()  # metrics: the upstream's latency
    try:
        exchange = await pool.request(
            origin,
            head,
            data,
            chunked=declared is None,
            head_only=call.method == "HEAD",
        )
        try:
            call.status = exchange.status
            call.upstream = time.perf_counter() - sent
            await send(
                {
                    "type": "http.response.start",
                    "status": exchange.status,
                    "headers": response_headers(exchange.headers, call.request_id),
                }
            )
            started = True
            if call.facts:  # `detailed` or `complete` audit level
                note_response(call, exchange.headers)
            length = exchange.content_length
            if length is not None and length <= SMALL_BODY:  # one send, not a stream
                small = await exchange.read_all()
                call.bytes_out = len(small)
                if call.response_hash is not None:
                    call.response_hash.update(small)
                await send({"type": "http.response.body", "body": small})
            else:
                while chunk := await exchange.read_chunk():
                    call.bytes_out += len(chunk)
                    if call.response_hash is not None:
                        call.response_hash.update(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        finally:
            pool.release(exchange)
        core.circuits.success(target.id)
    except (BodyTooLarge, ClientGone, UpstreamError) as exc:
        if body_error == "body_too_large" and not started:
            raise LaneError("body_too_large", f"the body is larger than {cap} bytes") from exc
        if body_error:
            call.status, call.reason = 499 if not started else call.status, body_error
            raise UpstreamAborted(body_error) from exc
        if isinstance(exc, UpstreamTimeout):
            reason, what = "upstream_timeout", "did not answer in time"
        elif isinstance(exc, ConnectFailed):
            reason, what = "upstream_refused", "refused the connection"
        elif isinstance(exc, UpstreamBadResponse):
            reason, what = "upstream_bad_response", "sent a malformed or oversized response"
        else:
            reason, what = "upstream_failed", "broke off the exchange"
        core.circuits.failure(target.id)
        if started:  # too late for a problem document: cut the response short
            call.reason = reason
            raise UpstreamAborted(reason) from exc
        raise LaneError(reason, f"{target.id} {what}") from exc


def _request_head(
    core: Core,
    call: Call,
    scope: Scope,
    target: PluginView,
    origin: Origin,
    rest: bytes,
    path: str,
    declared: int | None,
) -> bytes:
    """Request line and headers for the target: the caller's filtered headers, core's
    identity headers, the target's Host and the body's framing."""
    prefix = base_path(target.base_url)
    query = scope.get("query_string", b"")
    line = b"%s %s/api/%s%s%s HTTP/1.1\r\n" % (
        call.method.encode("ascii"),
        prefix,
        rest,
        b"?" if query else b"",
        query,
    )
    parts = [line, b"host: ", origin.host_header, b"\r\n"]
    for key, value in request_headers(
        scope["headers"], identity_headers(core, call, scope, target, path)
    ):
        parts += (key, b": ", value, b"\r\n")
    if declared is None:
        parts.append(b"transfer-encoding: chunked\r\n")
    elif declared > 0 or call.method in ("POST", "PUT", "PATCH"):
        parts.append(b"content-length: %d\r\n" % declared)
    parts.append(b"\r\n")
    return b"".join(parts)


def note_response(call: Call, headers: list[tuple[bytes, bytes]]) -> None:
    """The response's content type and header names, for the audit record."""
    call.facts["response_content_type"] = next(
        (v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None
    )
    call.facts["response_headers"] = sorted({k.decode("latin-1").lower() for k, _ in headers})


class UpstreamAborted(Exception):
    """The target failed after its response had started: the connection is cut."""


def identity_headers(
    core: Core, call: Call, scope: Scope, target: PluginView, path: str
) -> list[tuple[bytes, bytes]]:
    """What the target may trust: set by core, never by the caller."""
    client = scope.get("client") or ("", 0)
    host = header_value(scope["headers"], b"host")
    assertion = core.tokens.issue_assertion(
        call.caller,
        target.id,
        method=call.method,
        path=path,
        request_id=call.request_id,
    )
    added = [
        (b"x-vivified-caller", call.caller.encode()),
        (b"x-vivified-request-id", call.request_id.encode()),
        (b"x-vivified-assertion", assertion.token.encode()),
        (b"x-forwarded-for", str(client[0]).encode()),
        (b"x-forwarded-proto", str(scope.get("scheme", "http")).encode()),
    ]
    if host:
        added.append((b"x-forwarded-host", host[0]))
    if call.trace is not None:  # the caller's trace, core's span as the parent
        added += call.trace.headers()
    return added
