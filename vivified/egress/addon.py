"""The core mitmproxy addon: authenticate, ask policy, pin the address, filter, record."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks

from vivified.egress.auth import ProxyAuthenticator
from vivified.egress.filters import (
    CountingStream,
    LimitedStream,
    ReplacementStream,
)
from vivified.egress.flow_state import (
    AUDITED,
    DENIED,
    OUTCOME,
    AuditSink,
    SnapshotSource,
    Target,
    Tunnel,
    needs_streaming,
    same_authority,
    same_name,
)
from vivified.egress.passthrough import PassthroughTunnels
from vivified.egress.records import Outcome, build_event
from vivified.egress.resolve import ResolveError, Resolver
from vivified.egress.response_filtering import ResponseFiltering
from vivified.egress.responses import error_response, status_for
from vivified.policy.decision import Decision
from vivified.policy.egress import (
    EgressRequest,
    audit_decision,
    audit_reason,
    decide_addresses,
    decide_egress,
)
from vivified.policy.hosts import parse_host

log = logging.getLogger(__name__)
HOP_HEADERS = ("proxy-authorization", "proxy-connection")


class EgressAddon(ResponseFiltering, PassthroughTunnels):
    """Thin adapter between mitmproxy hooks and `vivified.policy.egress`."""

    def __init__(
        self,
        *,
        snapshots: SnapshotSource,
        authenticator: ProxyAuthenticator,
        resolver: Resolver,
        audit: AuditSink,
        own_listeners: Iterable[tuple[str, int]] = (),
        connect_timeout: float = 30.0,
        tunnel_max_seconds: float = 3600.0,
        close_client: Callable[[connection.Client, bool], None] | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._auth = authenticator
        self._resolver = resolver
        self._audit = audit
        self.own_listeners: list[tuple[str, int]] = list(own_listeners)
        self._connect_timeout = connect_timeout
        self._tunnel_max = tunnel_max_seconds
        self._close_client = close_client
        self._tunnels: dict[str, Tunnel] = {}
        self._pins: dict[str, set[tuple[str, int]]] = {}
        self._connect_timers: dict[str, asyncio.TimerHandle] = {}
        self._timed_out: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()

    # --- recording ----------------------------------------------------------------------------

    def _record(self, outcome: Outcome, meta: dict[Any, Any] | None = None) -> None:
        if meta is not None:
            if meta.get(AUDITED):
                return
            meta[AUDITED] = True
        event = build_event(outcome, time.time())
        if not self._audit.record_nowait(event):  # full queue: wait rather than drop
            task = asyncio.get_running_loop().create_task(self._audit.record(event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _deny(self, flow: http.HTTPFlow, o: Outcome, reason: str, detail: str) -> None:
        status = status_for(reason)
        flow.response = error_response(reason, detail, status)
        flow.metadata[DENIED] = True
        o.decision, o.reason, o.status = "deny", reason, status
        self._record(o, flow.metadata)

    # --- policy -------------------------------------------------------------------------------

    def _decide(self, plugin_id: str, host: str, port: int) -> tuple[Decision, Any]:
        snap = self._snapshots.current
        view = snap.plugins.get(plugin_id)
        req = EgressRequest(
            plugin_id=plugin_id,
            plugin_status=None if view is None else view.status,
            allowlist=() if view is None else tuple(view.egress_domains),
            mode="enforce" if view is None else view.egress_mode,
            host=host,
            port=port,
            settings=snap.egress,
        )
        return decide_egress(req), view

    async def _authorise(
        self, plugin_id: str, raw_host: str, port: int, o: Outcome
    ) -> Target | str:
        """A Target, or the denial reason (with `o.extra['detail']` set)."""
        decision, view = self._decide(plugin_id, raw_host, port)
        o.mode = "" if view is None else view.egress_mode
        if not decision.allowed:
            o.extra["detail"] = decision.detail
            return decision.reason
        host = parse_host(raw_host)
        o.host = host.value
        settings = self._snapshots.current.egress
        try:
            addresses, source = await self._resolver.resolve(host, port, settings.host_overrides)
        except ResolveError as exc:
            o.extra["detail"] = str(exc)
            return exc.code
        o.extra["resolved"] = [str(a) for a in addresses]
        o.extra["source"] = source
        safe = decide_addresses(addresses, port, settings, self.own_listeners)
        if not safe.allowed:
            o.extra["detail"] = safe.detail
            return safe.reason
        o.address = safe.detail
        o.decision, o.reason = audit_decision(decision), audit_reason(decision)
        return Target(
            plugin_id,
            host.value,
            port,
            safe.detail,
            decision,
            view.egress_mode,
            settings.is_passthrough(host.value),
        )

    def _pin(self, client: connection.Client, address: str, port: int) -> None:
        self._pins.setdefault(client.id, set()).add((address, port))

    # --- CONNECT ------------------------------------------------------------------------------

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        o = Outcome(
            "connect",
            "",
            flow.request.host,
            flow.request.port,
            request_id=flow.id,
            method="CONNECT",
            started=time.time(),
        )
        flow.metadata[OUTCOME] = o
        auth = await self._auth.authenticate(flow.request.headers.get_all("proxy-authorization"))
        for name in HOP_HEADERS:
            flow.request.headers.pop(name, None)
        if not auth.ok:
            o.actor = auth.claimed_id
            return self._deny(flow, o, auth.reason, "proxy credentials required: Basic id:token")
        assert auth.plugin_id is not None
        o.actor = auth.plugin_id
        target = await self._authorise(auth.plugin_id, flow.request.host, flow.request.port, o)
        if isinstance(target, str):
            return self._deny(flow, o, target, str(o.extra.pop("detail", "")))
        o.extra.pop("detail", None)
        o.extra["passthrough"] = target.passthrough
        # Connect to exactly the checked address; the upstream TLS name stays the CONNECT name.
        flow.request.data.host = target.address
        flow.server_conn.sni = target.host
        self._pin(flow.client_conn, target.address, target.port)
        self._tunnels[flow.client_conn.id] = Tunnel(target, o.started, flow.id)

    def http_connected(self, flow: http.HTTPFlow) -> None:
        o = flow.metadata.get(OUTCOME)
        if o is not None and flow.response is not None:
            o.status = flow.response.status_code
            self._record(o, flow.metadata)

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        o = flow.metadata.get(OUTCOME)
        if o is None or flow.metadata.get(AUDITED):
            return
        reason = (
            "upstream_timeout"
            if flow.server_conn.id in self._timed_out
            else ("upstream_connect_failed")
        )
        detail = f"cannot connect to {o.host}:{o.port}"
        status = status_for(reason)
        flow.response = error_response(reason, detail, status)
        o.reason, o.status = reason, status
        self._tunnels.pop(flow.client_conn.id, None)
        self._record(o, flow.metadata)

    # --- upstream connections -----------------------------------------------------------------

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        pins = self._pins.get(data.client.id, set())
        if address is None or (str(address[0]), int(address[1])) not in pins:
            data.server.error = "egress: destination was not authorised"
            return
        task = asyncio.current_task()
        if task is not None:
            server = data.server
            self._connect_timers[server.id] = asyncio.get_running_loop().call_later(
                self._connect_timeout, self._connect_expired, server, task
            )

    def _connect_expired(self, server: connection.Server, task: asyncio.Task[Any]) -> None:
        self._connect_timers.pop(server.id, None)
        if server.timestamp_tcp_setup is None:
            self._timed_out.add(server.id)
            task.cancel()

    def _stop_connect_timer(self, data: server_hooks.ServerConnectionHookData) -> None:
        timer = self._connect_timers.pop(data.server.id, None)
        if timer is not None:
            timer.cancel()

    server_connected = _stop_connect_timer
    server_connect_error = _stop_connect_timer

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._timed_out.discard(data.server.id)

    def client_disconnected(self, client: connection.Client) -> None:
        self._pins.pop(client.id, None)
        tunnel = self._tunnels.pop(client.id, None)
        if tunnel is None:
            return
        if tunnel.timer is not None:
            tunnel.timer.cancel()
        if tunnel.outcome is not None:  # a passthrough tunnel ends with its connection
            if tunnel.expired:
                tunnel.outcome.reason = "tunnel_lifetime_exceeded"
            tunnel.outcome.extra["duration_s"] = round(time.time() - tunnel.outcome.started, 3)
            self._record(tunnel.outcome)

    # --- requests (plain HTTP and inside intercepted tunnels) ---------------------------------

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        tunnel = self._tunnels.get(flow.client_conn.id)
        o = Outcome(
            "request",
            "",
            req.host,
            req.port,
            request_id=flow.id,
            method=req.method,
            path=req.path,
            started=time.time(),
        )
        flow.metadata[OUTCOME] = o
        auth_values = req.headers.get_all("proxy-authorization")
        for name in HOP_HEADERS:
            req.headers.pop(name, None)
        if flow.error is not None:  # mitmproxy already refused it (e.g. smuggling attempt)
            o.reason, o.status = "bad_request", 400
            return self._record(o, flow.metadata)
        if tunnel is not None:
            return self._inner_request(flow, tunnel, o)
        auth = await self._auth.authenticate(auth_values)
        if not auth.ok:
            o.actor = auth.claimed_id
            return self._deny(flow, o, auth.reason, "proxy credentials required: Basic id:token")
        assert auth.plugin_id is not None
        o.actor = auth.plugin_id
        if req.scheme != "http":
            return self._deny(flow, o, "bad_request", "use CONNECT for https")
        header = req.headers.get("host")
        if header is not None and not same_authority(header, req.host, req.port, 80):
            return self._deny(
                flow, o, "authority_mismatch", "the Host header disagrees with the request URL"
            )
        target = await self._authorise(auth.plugin_id, req.host, req.port, o)
        if isinstance(target, str):
            return self._deny(flow, o, target, str(o.extra.pop("detail", "")))
        o.extra.pop("detail", None)
        if header is None:
            req.headers["Host"] = (
                target.host if target.port == 80 else (f"{target.host}:{target.port}")
            )
        req.data.host = target.address
        self._pin(flow.client_conn, target.address, target.port)
        flow.metadata["vivified.target"] = target
        if needs_streaming(req.headers):
            req.stream = CountingStream()

    def _inner_request(self, flow: http.HTTPFlow, tunnel: Tunnel, o: Outcome) -> None:
        t = tunnel.target
        o.actor, o.host, o.port, o.address, o.mode = t.plugin_id, t.host, t.port, t.address, t.mode
        client = flow.client_conn
        if client.tls and not same_name(client.sni, t.host):
            return self._deny(
                flow,
                o,
                "sni_mismatch",
                f"TLS SNI {client.sni!r} differs from the CONNECT host {t.host}",
            )
        header = flow.request.host_header
        if header is None or not same_authority(header, t.host, t.port, 443 if client.tls else 80):
            return self._deny(
                flow, o, "host_mismatch", f"Host {header!r} differs from the CONNECT host {t.host}"
            )
        decision, _view = self._decide(t.plugin_id, t.host, t.port)  # the current snapshot
        if not decision.allowed:
            return self._deny(flow, o, decision.reason, decision.detail)
        o.decision, o.reason = audit_decision(decision), audit_reason(decision)
        flow.metadata["vivified.target"] = t
        if needs_streaming(flow.request.headers):
            flow.request.stream = CountingStream()

    def _finish(self, flow: http.HTTPFlow) -> None:
        o: Outcome | None = flow.metadata.get(OUTCOME)
        if o is None:
            return
        if isinstance(flow.request.stream, CountingStream):
            o.bytes_out = flow.request.stream.total
        elif flow.request.raw_content:
            o.bytes_out = len(flow.request.raw_content)
        stream = flow.response.stream if flow.response is not None else None
        if isinstance(stream, LimitedStream | ReplacementStream):
            o.bytes_in = stream.total
        elif flow.response is not None and flow.response.raw_content:
            o.bytes_in = len(flow.response.raw_content)
        if flow.response is not None and not o.status:
            o.status = flow.response.status_code
        self._record(o, flow.metadata)

    def response(self, flow: http.HTTPFlow) -> None:
        stream = flow.response.stream if flow.response is not None else None
        if isinstance(stream, ReplacementStream) and not stream.sent and flow.response:
            flow.response.stream = False
            flow.response.content = stream(b"")  # the upstream sent no body at all
        self._finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        o: Outcome | None = flow.metadata.get(OUTCOME)
        if o is None or flow.metadata.get(AUDITED):
            return
        # On this path mitmproxy itself answers the client, always with 502.
        timed_out = flow.server_conn.id in self._timed_out or o.reason == "upstream_timeout"
        o.reason = "upstream_timeout" if timed_out else "upstream_failed"
        if flow.response is None:
            o.status = 502
        o.extra["error"] = flow.error.msg if flow.error else ""
        self._finish(flow)
