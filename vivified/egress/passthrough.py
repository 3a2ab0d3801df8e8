"""Passthrough tunnels as a mitmproxy addon: SNI checked, bytes counted, lifetime bounded.

A CONNECT to a passthrough domain (egress settings) is not intercepted: once the ClientHello's
SNI has been checked against the CONNECT host, the tunnel carries opaque bytes. It is relayed
by mitmproxy's hook-free TCP layer (bare-mitmproxy speed) with a byte count added, and ends
with one audit record (`tunnel`, bytes each way, duration) when the client goes or its
lifetime runs out. A ClientHello naming another host falls through to interception, where
`RequestAuthority` answers the first request 421.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from mitmproxy import connection, http
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import events, layer, layers
from mitmproxy.proxy.layers.tls import parse_client_hello

from vivified.egress.authority import same_name
from vivified.egress.flow_state import Target, target
from vivified.egress.live_state import CloseClient, EgressState
from vivified.egress.records import Outcome
from vivified.policy.egress import audit_decision, audit_reason


@dataclass
class Tunnel:
    """One accepted CONNECT to a passthrough domain, by client connection."""

    target: Target
    request_id: str
    layer_decided: bool = False
    expired: bool = False
    timer: asyncio.TimerHandle | None = None
    outcome: Outcome | None = None  # set once the tunnel relays opaque bytes


class CountingTCPLayer(layers.TCPLayer):
    """mitmproxy's ignored (hook-free) TCP relay, counting the bytes in each direction
    (`bytes_out`: client → upstream, `bytes_in`: upstream → client, as for requests)."""

    def __init__(self, context: Any, outcome: Outcome) -> None:
        super().__init__(context, ignore=True)
        self.outcome = outcome

    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            if event.connection == self.context.client:
                self.outcome.bytes_out += len(event.data)
            else:
                self.outcome.bytes_in += len(event.data)
        yield from super().relay_messages(event)  # checks the event types


class PassthroughTunnels:
    """A mitmproxy addon. `close_client(client, abort)` ends a tunnel whose lifetime ran out
    (the launcher reaches into mitmproxy's connection handler for it)."""

    def __init__(
        self, state: EgressState, max_seconds: float, close_client: CloseClient | None = None
    ) -> None:
        self._audit = state.audit
        self.max_seconds = max_seconds
        self._close_client = close_client
        self._tunnels: dict[str, Tunnel] = {}

    def http_connected(self, flow: http.HTTPFlow) -> None:
        accepted = target(flow)
        if accepted is not None and accepted.passthrough:
            self._tunnels[flow.client_conn.id] = Tunnel(accepted, flow.id)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        tunnel = self._tunnels.get(nextlayer.context.client.id)
        if tunnel is None or tunnel.layer_decided:
            return
        data = nextlayer.data_client()  # type: ignore[no-untyped-call]
        if not starts_like_tls_record(data):
            tunnel.layer_decided = True
            return  # plain HTTP inside: intercepted, Host rules apply
        try:
            hello = parse_client_hello(data)
        except ValueError:
            tunnel.layer_decided = True
            return
        if hello is None:
            nextlayer.layer = None  # wait for the whole ClientHello
            return
        tunnel.layer_decided = True
        if same_name(hello.sni, tunnel.target.host):
            # Undo what the default TLS layer choice marked; this tunnel carries opaque bytes.
            nextlayer.context.client.tls = False
            nextlayer.context.server.tls = False
            outcome = self._start(nextlayer.context.client, tunnel)
            nextlayer.layer = CountingTCPLayer(nextlayer.context, outcome)
        # SNI differs: fall through to interception; the first request is answered 421.

    def _start(self, client: connection.Client, tunnel: Tunnel) -> Outcome:
        t = tunnel.target
        tunnel.outcome = Outcome(
            "tunnel",
            t.plugin_id,
            t.host,
            t.port,
            decision=audit_decision(t.decision),
            reason=audit_reason(t.decision),
            status=200,
            request_id=tunnel.request_id,
            address=t.address,
            mode=t.mode,
            started=time.time(),
            extra={"passthrough": True},
        )
        tunnel.timer = asyncio.get_running_loop().call_later(self.max_seconds, self._expire, client)
        return tunnel.outcome

    def _expire(self, client: connection.Client) -> None:
        tunnel = self._tunnels.get(client.id)
        if tunnel is not None:
            tunnel.expired = True
        if self._close_client is not None:
            self._close_client(client, False)

    def client_disconnected(self, client: connection.Client) -> None:
        tunnel = self._tunnels.pop(client.id, None)
        if tunnel is None:
            return
        if tunnel.timer is not None:
            tunnel.timer.cancel()
        if tunnel.outcome is not None:  # a passthrough tunnel ends with its connection
            if tunnel.expired:
                tunnel.outcome.reason = "tunnel_lifetime_exceeded"
            tunnel.outcome.extra["duration_s"] = round(time.time() - tunnel.outcome.started, 3)
            self._audit.record(tunnel.outcome)
