"""WebSocket upgrades on the operator lane: the same admission as HTTP, then a relay.

The caller's handshake passes every check of the HTTP lane (token, declared endpoint,
policy, circuit) before core opens the upstream WebSocket with core's identity headers;
only then is the caller's upgrade accepted. A refusal closes the handshake (the server
answers 403). Messages are relayed both ways until either side closes; one audit record
per connection carries the bytes each way (and, in `detail.closed`, why core ended it).

Admission is not a one-off: each open relay is registered in `core.relays`, which asks the
lane's decision again on every snapshot swap (a disable, a token-generation bump, a removed
grant anywhere in the deployment), and core ends it at once with 1008 and the refusal's
reason code. Core ends it the same way (1008 `expired`) when the lane stops accepting the
caller's token (its `exp` plus the clock-skew leeway): a timer set at admission. A relay also
ends after `ws_max_lifetime` seconds, or `ws_idle_timeout` seconds without a message either
way (1001 `ws_max_lifetime` / `ws_idle_timeout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from urllib.parse import unquote

import aiohttp
from multidict import CIMultiDict
from starlette.types import Receive, Scope, Send
from yarl import URL

from vivified.gateway.core import Core
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.operator.headers import folded, request_headers
from vivified.gateway.operator.lane import Call, _split, admit, judge
from vivified.gateway.operator.relays import Recheck, Relay
from vivified.gateway.operator.upstream import identity_headers
from vivified.gateway.problems import status_of
from vivified.registry.errors import DomainError
from vivified.registry.identity.bearer import extract_bearer
from vivified.registry.identity.tokens import PluginClaims, verify_current
from vivified.registry.store.snapshot import PluginView, Snapshot

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
POLICY_CLOSE = 1008  # RFC 6455: policy violation (the lane would refuse the relay now)
LIMIT_CLOSE = 1001  # going away: a lifetime limit, the client may reconnect
LIMITS = frozenset({"ws_max_lifetime", "ws_idle_timeout"})


async def _caller_claims(core: Core, scope: Scope) -> PluginClaims:
    """The claims of the caller's (already admitted) token: its generation and expiry."""
    token = extract_bearer(scope["headers"], scope.get("query_string", b""))
    return await verify_current(core.tokens, core.snapshot, token)


def readmission(core: Core, scope: Scope, caller: str, gen: int, target: PluginView) -> Recheck:
    """The lane's decision for this relay under a later snapshot: None (still admitted) or
    the reason code that ends it."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    service, rest = _split(raw_path.split(b"?", 1)[0])
    path = "/api/" + unquote(rest.decode("ascii"))  # as `admit` decoded it

    def recheck(snap: Snapshot) -> str | None:
        verdict = judge(core, snap, caller, service, "GET", path)
        if isinstance(verdict, LaneError):
            return verdict.code
        current = snap.plugin_gen(caller)
        if current is None:
            return "unknown_plugin"
        if current != gen:
            return "revoked"
        if verdict[0].id != target.id:
            return "target_changed"
        return None

    return recheck


async def relay_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    core: Core = scope["app"].state.core
    call = Call("GET", scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
    relay: Relay | None = None
    try:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        target, rest, path = await admit(core, call, scope)
        claims = await _caller_claims(core, scope)
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
            raise LaneError("upstream_refused", f"{target.id} refused the WebSocket") from exc
        core.circuits.success(target.id)
        relay = Relay(
            call.caller, target.id, readmission(core, scope, call.caller, claims.gen, target)
        )
        core.relays.add(relay)
        # ends when the lane would refuse the token (exp + leeway); cancelled by `discard`
        relay.expire_at(core.tokens.accepted_until(claims))
        try:
            call.status = 101
            await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
            relay.touch()
            reason = relay.recheck(core.snapshot.current)  # a swap while the upstream opened
            if reason is not None:
                relay.end(reason)
            await _pump(core, call, relay, receive, send, upstream)
        finally:
            core.relays.discard(relay)
    except DomainError as exc:  # a LaneError, or the TokenError of the caller's token
        call.reason, call.status = exc.code, status_of(exc)
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1008})
    except Exception:
        log.exception("operator lane websocket failed", extra={"request_id": call.request_id})
        call.reason, call.status = "internal_error", 500
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1011})
    finally:
        event = call.event()
        if relay is not None and relay.end_reason:
            event = dataclasses.replace(event, detail={**event.detail, "closed": relay.end_reason})
        await core.audit.record(event)


async def _pump(
    core: Core,
    call: Call,
    relay: Relay,
    receive: Receive,
    send: Send,
    upstream: aiohttp.ClientWebSocketResponse,
) -> None:
    async def caller_to_target() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            relay.touch()
            if message.get("text") is not None:
                call.bytes_in += len(message["text"].encode())
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                call.bytes_in += len(message["bytes"])
                await upstream.send_bytes(message["bytes"])

    async def target_to_caller() -> None:
        async for msg in upstream:
            relay.touch()
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

    async def limits() -> None:
        """Ends the relay when it is revoked, too old, or idle too long."""
        settings = core.settings
        while not relay.ended.is_set():
            now = time.monotonic()
            if now >= relay.started + settings.ws_max_lifetime:
                relay.end("ws_max_lifetime")
            elif now >= relay.last_active + settings.ws_idle_timeout:
                relay.end("ws_idle_timeout")
            else:
                due = min(
                    relay.started + settings.ws_max_lifetime,
                    relay.last_active + settings.ws_idle_timeout,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due - now):
                        await relay.ended.wait()

    tasks = [
        asyncio.ensure_future(caller_to_target()),
        asyncio.ensure_future(target_to_caller()),
        asyncio.ensure_future(limits()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        reason = relay.end_reason
        if reason:  # core ends it: both sides hear why
            code = LIMIT_CLOSE if reason in LIMITS else POLICY_CLOSE
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code, "reason": reason})
            await upstream.close(code=code, message=reason.encode())
        else:
            await upstream.close()
