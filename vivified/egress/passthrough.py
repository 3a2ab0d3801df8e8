"""Passthrough tunnels of the egress addon: SNI checked, bytes counted, lifetime bounded.

A CONNECT to a passthrough domain is not intercepted: once the ClientHello's SNI has been
checked against the CONNECT host, the tunnel carries opaque bytes. It is relayed by mitmproxy's
hook-free TCP layer (bare-mitmproxy speed) with a byte count added, and ends with one audit
record (`tunnel`, bytes each way, duration) when the client goes or its lifetime runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import connection
from mitmproxy.net.tls import starts_like_tls_record
from mitmproxy.proxy import events, layer, layers
from mitmproxy.proxy.layers.tls import parse_client_hello

from vivified.egress.flow_state import Tunnel, same_name
from vivified.egress.records import Outcome
from vivified.policy.egress import audit_decision, audit_reason


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
    """Mixin of the egress addon (its state lives there)."""

    _tunnels: dict[str, Tunnel]
    _tunnel_max: float
    _close_client: Callable[[connection.Client, bool], Any] | None

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        tunnel = self._tunnels.get(nextlayer.context.client.id)
        if tunnel is None or not tunnel.target.passthrough or tunnel.layer_decided:
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
            outcome = self._start_passthrough(nextlayer.context.client, tunnel)
            nextlayer.layer = CountingTCPLayer(nextlayer.context, outcome)
        # SNI differs: fall through to interception; the first request is answered 421.

    def _start_passthrough(self, client: connection.Client, tunnel: Tunnel) -> Outcome:
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
        tunnel.timer = asyncio.get_running_loop().call_later(
            self._tunnel_max, self._expire_tunnel, client
        )
        return tunnel.outcome

    def _expire_tunnel(self, client: connection.Client) -> None:
        tunnel = self._tunnels.get(client.id)
        if tunnel is not None:
            tunnel.expired = True
        if self._close_client is not None:
            self._close_client(client, False)
