"""The Operator API lane: `ANY /{service}/{rest}` → the target plugin's `{base_url}/api/{rest}`.

A raw ASGI endpoint, so bodies stream both ways without buffering. Order of checks: the raw
path (before anything is decoded), the caller's token, the target, the declared endpoint, the
policy decision, the audit store (sensitive targets fail closed), framing and size, the
circuit. Every request, refused or forwarded, is one audit record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.types import Receive, Scope, Send

from vivified.config.logs import bind, unbind
from vivified.config.otlp import report_span
from vivified.gateway.core import Core
from vivified.gateway.middleware import access_log, log_access
from vivified.gateway.operator.errors import LaneError
from vivified.gateway.operator.upstream import UpstreamAborted, forward
from vivified.gateway.problems import send_problem, status_of
from vivified.gateway.tracing import begin, with_trace
from vivified.policy.audit_levels import level_detail, records, strictest, wants_hash
from vivified.policy.operator import decide_call
from vivified.policy.paths import check_raw_path, match_endpoint
from vivified.policy.tracecontext import TraceContext
from vivified.registry.audit.bounds import claimed
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.errors import DomainError
from vivified.registry.identity.bearer import extract_bearer
from vivified.registry.identity.tokens import verify_current
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
    upstream: float = 0.0  # seconds until the upstream's response head (metrics)
    trace: TraceContext | None = None  # this call's span of the caller's (or a new) trace
    level: str = "basic"  # the strictest audit level of caller and target
    facts: dict[str, Any] = field(default_factory=dict)  # what `detailed`+ levels record
    request_hash: Any = None  # hashlib sha256 objects, fed while the bodies stream
    response_hash: Any = None
    held: bool = False  # holds one of the caller's concurrency slots (fair sharing)

    def set_level(self, level: str, facts: dict[str, Any]) -> None:
        self.level, self.facts = level, facts
        if wants_hash(level):
            self.request_hash, self.response_hash = hashlib.sha256(), hashlib.sha256()

    def skipped(self) -> bool:
        """Whether the level (`none`) leaves this call unrecorded (allowed calls only)."""
        return not records(self.level, self.decision)

    def event(self) -> AuditEvent:
        detail: dict[str, Any] = {"route": self.route} if self.route else {}
        with_trace(detail, self.trace)
        if self.facts:
            facts = {**self.facts, "request_size": self.bytes_in, "response_size": self.bytes_out}
            if self.request_hash is not None:
                facts["request_sha256"] = self.request_hash.hexdigest()
                facts["response_sha256"] = self.response_hash.hexdigest()
            detail.update(level_detail(self.level, facts))
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
    allow reason), or the LaneError that refuses the call, on `snap` (`judged` adds the
    confirmation of a refusal that the lane and the explainers ask for)."""
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


async def judged(
    core: Core, caller_id: str, service: str, method: str, path: str
) -> tuple[Snapshot, Verdict]:
    """`judge` on the current snapshot; a refusal is confirmed first (`SnapshotHolder.confirm`):
    on a snapshot behind the registry the call is judged again on a fresh one. Returns the
    snapshot that decided, with its verdict. The lane and the explainers both ask this."""
    snap = core.snapshot.current
    verdict = judge(core, snap, caller_id, service, method, path)
    if isinstance(verdict, LaneError):
        fresh = await core.snapshot.confirm()
        if fresh is not snap:
            snap = fresh
            verdict = judge(core, snap, caller_id, service, method, path)
    return snap, verdict


async def evaluate(
    core: Core, caller_id: str, service: str, method: str, path: str
) -> tuple[Snapshot, tuple[PluginView, str, str]]:
    """`judged`, raising its LaneError."""
    snap, verdict = await judged(core, caller_id, service, method, path)
    if isinstance(verdict, LaneError):
        raise verdict
    return snap, verdict


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


async def admit(
    core: Core, call: Call, scope: Scope, *, hold: bool = False
) -> tuple[PluginView, bytes, str]:
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
    claims = await verify_current(core.tokens, core.snapshot, token)
    call.caller, call.target = claims.plugin_id, service  # the writer bounds the name
    core.limits.check_rate(claims.plugin_id)  # fair sharing: 429 rate_limited
    path = "/api/" + unquote(rest.decode("ascii"))
    snap, (target, route, reason) = await evaluate(
        core, claims.plugin_id, service, call.method, path
    )
    call.target, call.route = target.id, route
    caller_view = snap.plugins.get(claims.plugin_id)
    level = strictest((caller_view.audit_level if caller_view else "basic", target.audit_level))
    if level in ("detailed", "complete"):
        call.set_level(level, call_facts(snap, caller_view, target, route, reason, scope))
    else:
        call.level = level
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
    if hold:  # last: no other refusal can leave the slot taken (released in the lane)
        call.held = core.limits.acquire(call.caller)
    call.decision, call.reason = "allow", reason
    return target, rest, path


def call_facts(
    snap: Snapshot,
    caller: PluginView | None,
    target: PluginView,
    route: str,
    reason: str,
    scope: Scope,
) -> dict[str, Any]:
    """What a `detailed` (or `complete`) record says beyond a basic one, known before
    forwarding; the sizes, response facts and hashes are added as the call goes."""
    headers = scope["headers"]
    grant = None
    if reason == "grant":
        grant = next(
            (
                g.id
                for g in snap.grants
                if caller and g.caller == caller.id and g.target == target.id
            ),
            None,
        )
    return {
        "params": [p.split(":", 1)[0] for p in re.findall(r"\{([^}]*)\}", route)],
        "request_content_type": next(
            (v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None
        ),
        "request_headers": sorted({k.decode("latin-1").lower() for k, _ in headers}),
        "policy": {
            "decided_by": reason,
            "caller_traits": sorted(caller.traits) if caller else [],
            "target_traits": sorted(target.traits),
            "classification": sorted(target.classification),
            "grant": grant,
        },
    }


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
        call = Call(scope["method"], rid, trace=begin(scope))
        bound = bind(rid, call.trace.trace_id if call.trace else "")  # names every log line
        try:
            target, rest, path = await admit(core, call, scope, hold=True)
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
            if call.held:
                core.limits.release(call.caller)
            if not call.skipped():  # waits when the queue is full; never drops
                await core.audit.record(call.event())
            if core.metrics is not None:
                core.metrics.call(call)
            if access_log.isEnabledFor(logging.INFO):  # skip building the record when not logged
                log_access(scope, rid, call.status, call.started)
            elapsed = time.perf_counter() - call.started
            report_span("operator", call.trace, elapsed, target=call.target, status=call.status)
            unbind(bound)

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
