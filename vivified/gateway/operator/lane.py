"""The Operator API lane: `ANY /{service}/{rest}` → the target plugin's `{base_url}/api/{rest}`.

A raw ASGI endpoint, so bodies stream both ways without buffering. Order of checks: the raw
path (before anything is decoded), the caller's token, the target, the declared endpoint, the
policy decision, the audit store (sensitive targets fail closed), framing and size, the
circuit. Every request, refused or forwarded, is one audit record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.types import Receive, Scope, Send

from vivified.gateway.core import Core
from vivified.gateway.middleware import access_log, log_access
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.operator.upstream import UpstreamAborted, forward
from vivified.gateway.problems import send_problem, status_of
from vivified.policy.operator import decide_call
from vivified.policy.paths import check_raw_path, match_endpoint
from vivified.registry.audit.bounds import claimed
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.errors import DomainError
from vivified.registry.identity.bearer import extract_bearer
from vivified.registry.manifest.validator import RESERVED_IDS
from vivified.registry.store.snapshot import PluginView, Snapshot

log = logging.getLogger("vivified.operator")
WATCH_AFTER = 0.1  # seconds before a call starts watching for the client going away
SENSITIVE = frozenset({"pii", "phi"})


@dataclass
class Call:
    """What the audit record of one operator-lane request will say."""

    method: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    caller: str = "anonymous"
    target: str = ""
    route: str = ""
    decision: str = "deny"
    reason: str = ""
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def event(self) -> AuditEvent:
        detail: dict[str, Any] = {"route": self.route} if self.route else {}
        return AuditEvent(
            actor=self.caller,
            lane="operator",
            action=self.method,
            target=self.target,
            decision=self.decision,
            reason=self.reason,
            request_id=self.request_id,
            status=self.status,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            detail=detail,
        )


def _ascii(raw: bytes) -> bytes:
    """Percent-encode raw non-ASCII bytes (already checked to be UTF-8) so the path is ASCII."""
    if raw.isascii():
        return raw
    return b"".join(b"%%%02X" % c if c >= 0x80 else bytes((c,)) for c in raw)


def _split(raw_path: bytes) -> tuple[str, bytes]:
    """`/service/rest…` → (service, b"rest…") on the still-encoded path."""
    _, _, tail = _ascii(raw_path).partition(b"/")
    service, _, rest = tail.partition(b"/")
    return unquote(service.decode("ascii", "strict")), rest


Verdict = tuple[PluginView, str, str] | LaneError


def judge(
    core: Core, snap: Snapshot, caller_id: str, service: str, method: str, path: str
) -> Verdict:
    """Resolve the target, match the declared endpoint, decide: (target, route template,
    allow reason), or the LaneError that refuses the call. The lane (`evaluate`) and
    `GET /admin/policy/explain` both use this."""
    table = core.routes.for_snapshot(snap)
    found = table.resolve(service)
    if found.plugin is None:
        return LaneError(found.reason, found.detail)
    target = found.plugin
    route = match_endpoint(table.endpoints.get(target.id, ()), path)
    if route is None:
        return LaneError("endpoint_not_declared", f"{target.id} declares no endpoint for {path}")
    decision = decide_call(
        snap.plugins.get(caller_id), target, method=method, path=path, grants=snap.grants
    )
    if not decision:
        return LaneError(decision.reason, decision.detail)
    return target, route.template, decision.reason


def evaluate(
    core: Core, snap: Snapshot, caller_id: str, service: str, method: str, path: str
) -> tuple[PluginView, str, str]:
    """`judge`, raising its LaneError."""
    verdict = judge(core, snap, caller_id, service, method, path)
    if isinstance(verdict, LaneError):
        raise verdict
    return verdict


async def audit_room(core: Core) -> None:
    """Wait for room in the full audit queue, at most `audit_wait` seconds, then refuse: a
    slow or failing store slows the callers (and finally refuses them) instead of letting
    answered calls pile up unrecorded."""
    try:
        async with asyncio.timeout(core.settings.audit_wait):
            await core.audit.room()
    except TimeoutError:
        raise LaneError(
            "audit_unavailable",
            "the audit trail cannot record more calls now; retry shortly",
            retry_after=2,
        ) from None


async def admit(core: Core, call: Call, scope: Scope) -> tuple[PluginView, bytes, str]:
    """Every check before forwarding (HTTP and WebSocket alike): the raw path, the token,
    the target, the declared endpoint, policy, audit health, the circuit. Returns the target,
    the still-encoded rest of the path and the decoded `/api/...` path; raises LaneError or
    TokenError."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    raw_path = raw_path.split(b"?", 1)[0]
    verdict = check_raw_path(raw_path)
    if not verdict:
        raise LaneError(verdict.reason, verdict.detail or "the path is not acceptable")
    service, rest = _split(raw_path)
    # The caller is unknown until its token verifies: the name is only a claim till then.
    call.target = claimed(service)
    if service in RESERVED_IDS:
        raise LaneError("not_found", f"/{service}/ is not an operator-lane route")
    token = extract_bearer(scope["headers"], scope.get("query_string", b""))
    snap = core.snapshot.current
    claims = core.tokens.verify_plugin_token_cached(token, snap.plugin_gen)
    if claims is None:
        claims = await core.tokens.verify_plugin_token(token, snap.plugin_gen)
    call.caller, call.target = claims.plugin_id, service  # the writer bounds the name
    path = "/api/" + unquote(rest.decode("ascii"))
    target, route, reason = evaluate(core, snap, claims.plugin_id, service, call.method, path)
    call.target, call.route = target.id, route
    if not core.audit.healthy and target.classification & SENSITIVE:
        raise LaneError(
            "audit_unavailable",
            "the audit store cannot be written; sensitive targets are refused until it recovers",
        )
    wait = core.circuits.retry_after(target.id)
    if wait is not None:
        raise LaneError("circuit_open", f"{target.id} is failing; retry later", retry_after=wait)
    if core.audit.full:  # this call's record comes after its answer: room for it first
        await audit_room(core)
    call.decision, call.reason = "allow", reason
    return target, rest, path


class OperatorLane:
    """The lane's ASGI app; the `Core` comes from the app state per request. It gives each
    request its id and access-log line itself (no middleware layer: every coroutine layer
    costs on every resume of the hot path)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        core: Core = scope["app"].state.core
        state = scope.setdefault("state", {})
        # Reached through Starlette's router (reserved paths) the middleware already set one.
        rid = state.get("request_id") or os.urandom(16).hex()
        state["request_id"] = rid
        call = Call(scope["method"], rid)
        try:
            target, rest, path = await admit(core, call, scope)
            await self._forward(core, call, scope, receive, send, target, rest, path)
        except DomainError as exc:  # a LaneError, or the TokenError of the caller's token
            call.reason, call.status = exc.code, status_of(exc)
            await send_problem(send, exc, rid)
        except UpstreamAborted:
            pass  # the response had started: returning unfinished makes the server cut it
        except Exception:  # never a traceback to the caller
            log.exception("operator lane failed", extra={"request_id": rid})
            call.reason, call.status = "internal_error", 500
            with contextlib.suppress(Exception):
                await send_problem(send, LaneError("internal_error", "see the server log"), rid)
        finally:
            await core.audit.record(call.event())  # waits when the queue is full; never drops
            if access_log.isEnabledFor(logging.INFO):  # skip building the record when not logged
                log_access(scope, rid, call.status, call.started)

    async def _forward(
        self,
        core: Core,
        call: Call,
        scope: Scope,
        receive: Receive,
        send: Send,
        target: PluginView,
        rest: bytes,
        path: str,
    ) -> None:
        """Forward, cancelling the upstream call if the client goes away (uvicorn won't)."""
        task = asyncio.current_task()
        assert task is not None
        body_done = asyncio.Event()
        gone = False
        watcher: asyncio.Task[None] | None = None

        async def watch_disconnect() -> None:
            nonlocal gone
            await body_done.wait()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    task.cancel()
                    return

        def start_watching() -> None:
            nonlocal watcher
            watcher = asyncio.get_running_loop().create_task(watch_disconnect())

        # Most calls finish quickly: only a call still running after WATCH_AFTER seconds gets
        # a task that notices the client leaving (a task per request would cost throughput).
        timer = asyncio.get_running_loop().call_later(WATCH_AFTER, start_watching)
        try:
            await forward(core, call, scope, receive, send, target, rest, path, body_done)
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()
            call.status, call.reason = 499, "client_disconnected"
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
