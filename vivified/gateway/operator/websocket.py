"""WebSocket upgrades on the operator lane: the same admission as HTTP, then a relay.

The caller's handshake passes every check of the HTTP lane (token, declared endpoint,
policy, circuit) before core opens the upstream WebSocket with core's identity headers;
only then is the caller's upgrade accepted. A refusal closes the handshake (the server
answers 403). Messages are relayed both ways until either side closes; one audit record
per connection carries the bytes each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import aiohttp
from multidict import CIMultiDict
from starlette.types import Receive, Scope, Send
from yarl import URL

from vivified.gateway.core import Core
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.operator.headers import folded, request_headers
from vivified.gateway.operator.lane import Call, admit
from vivified.gateway.operator.upstream import identity_headers

log = logging.getLogger("vivified.operator")
# What a WebSocket client handshake carries that the upstream handshake makes anew (in any
# spelling: compared as `folded` names, `_` read as `-`, like every header core strips).
_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


async def relay_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    core: Core = scope["app"].state.core
    call = Call("GET", scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
    try:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        target, rest, path = await admit(core, call, scope)
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request_headers(
                scope["headers"], identity_headers(core, call, scope, target, path)
            )
            if folded(k).decode("latin-1") not in _HANDSHAKE
        )
        url = target.base_url.rstrip("/") + "/api/" + rest.decode("ascii")
        query = scope.get("query_string", b"")
        if query:
            url += "?" + query.decode("latin-1")
        url = "ws" + url[4:] if url.startswith("http") else url
        try:
            upstream = await core.upstream.ws_connect(
                URL(url, encoded=True),
                headers=headers,
                protocols=tuple(scope.get("subprotocols", ())),
                autoping=True,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            core.circuits.failure(target.id)
            raise LaneError(502, "upstream_refused", f"{target.id} refused the WebSocket") from exc
        core.circuits.success(target.id)
        call.status = 101
        await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
        await _pump(call, receive, send, upstream)
    except LaneError as exc:
        call.reason, call.status = exc.reason, exc.status
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1008})
    except Exception:
        log.exception("operator lane websocket failed", extra={"request_id": call.request_id})
        call.reason, call.status = "internal_error", 500
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1011})
    finally:
        await core.audit.record(call.event())


async def _pump(
    call: Call, receive: Receive, send: Send, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    async def caller_to_target() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            if message.get("text") is not None:
                call.bytes_in += len(message["text"].encode())
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                call.bytes_in += len(message["bytes"])
                await upstream.send_bytes(message["bytes"])

    async def target_to_caller() -> None:
        async for msg in upstream:
            if msg.type == aiohttp.WSMsgType.TEXT:
                call.bytes_out += len(msg.data.encode())
                await send({"type": "websocket.send", "text": msg.data})
            elif msg.type == aiohttp.WSMsgType.BINARY:
                call.bytes_out += len(msg.data)
                await send({"type": "websocket.send", "bytes": msg.data})
            else:
                break
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    tasks = [asyncio.ensure_future(caller_to_target()), asyncio.ensure_future(target_to_caller())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await upstream.close()
