"""Reaching a live connection inside mitmproxy from the addon: close it, or feed it bytes.

mitmproxy offers no public call for these; its proxyserver addon keeps one connection handler
per client connection, keyed by the client's id. Everything that needs a handler goes
through `handler_for`, so the one dependency on that internal sits in one place (pinned by
the mitmproxy 11.x requirement).

`OpenTunnels` keeps the accepted CONNECT tunnels (intercepted or passthrough) with the
plugin and token generation that opened them; at every snapshot swap it ends those of a
plugin that may no longer use the lane (disabled, removed, its tokens revoked by a
generation bump) and those whose destination the egress policy no longer allows (a narrowed
allowlist, a blocked domain, a port no longer allowed, the kill switch: the CONNECT's own
decision, `egress_policy.decide`, asked again; no DNS), each with one audit record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import connection, http
from mitmproxy.proxy import events

from vivified.egress.egress_policy import decide
from vivified.egress.flow_state import PLUGIN, is_settled, target
from vivified.egress.live_state import EgressState
from vivified.egress.records import Outcome
from vivified.registry.store.snapshot import Snapshot

log = logging.getLogger(__name__)
GEN = "vivified.token_gen"  # flow.metadata: the generation of the CONNECT's credential


class LiveConnections:
    def __init__(self, master: Any) -> None:
        self._master = master
        self._injections: set[asyncio.Task[None]] = set()

    def handler_for(self, client: connection.Client, conn: connection.Connection) -> Any:
        """The handler that holds `conn` (the client's own or its upstream), or None."""
        handler = self._master.addons.get("proxyserver").connections.get(client.id)
        if handler is None or conn not in handler.transports:
            return None
        return handler

    def close_client(self, client: connection.Client, abort: bool = False) -> None:
        handler = self.handler_for(client, client)
        if handler is None:
            return
        writer = handler.transports[client].writer
        if abort and writer is not None and hasattr(writer, "transport"):
            writer.transport.abort()  # drop what is buffered: the client sees the cut
        handler.close_connection(client)

    def send_last(self, client: connection.Client, raw: bytes) -> bool:
        """Write `raw` to the client in one write, then close (buffered bytes go out first).

        mitmproxy writes nothing more to a closing connection, so `raw` is the last word."""
        handler = self.handler_for(client, client)
        writer = None if handler is None else handler.transports[client].writer
        if writer is None or writer.is_closing():
            return False
        writer.write(raw)
        writer.close()
        return True

    def inject(self, flow: http.HTTPFlow, raw: bytes) -> bool:
        """Deliver `raw` on the flow's upstream connection as if the upstream had sent it."""
        handler = self.handler_for(flow.client_conn, flow.server_conn)
        if handler is None:
            return False
        event = events.DataReceived(flow.server_conn, raw)
        task = asyncio.get_running_loop().create_task(handler.server_event(event))
        self._injections.add(task)
        task.add_done_callback(self._injections.discard)
        return True

    def close_upstream(self, flow: http.HTTPFlow) -> bool:
        handler = self.handler_for(flow.client_conn, flow.server_conn)
        if handler is None:
            return False
        handler.close_connection(flow.server_conn)
        return True


@dataclass(frozen=True)
class _Open:
    client: connection.Client
    plugin_id: str
    gen: int
    host: str
    port: int
    request_id: str


def revocation(snap: Snapshot, plugin_id: str, gen: int) -> str | None:
    """Why a tunnel opened by `plugin_id` with a token of `gen` must end now, or None."""
    view = snap.plugins.get(plugin_id)
    if view is None:
        return "unknown_plugin"
    if not view.active:
        return "plugin_not_active"
    if view.gen != gen:
        return "revoked"
    return None


def refusal(snap: Snapshot, tunnel: _Open) -> str | None:
    """Why `tunnel` must end on `snap`: revoked, or its destination refused by the policy that
    admits a CONNECT (names, ports and plugin state only; addresses were pinned at the CONNECT)."""
    reason = revocation(snap, tunnel.plugin_id, tunnel.gen)
    if reason is not None:
        return reason
    decision, _view = decide(snap, tunnel.plugin_id, tunnel.host, tunnel.port)
    return None if decision.allowed else decision.reason


class OpenTunnels:
    """A mitmproxy addon (place it after `PluginAuth`): the accepted CONNECT tunnels by client
    connection; `review(snapshot)` is a snapshot listener that ends the revoked ones and those
    the egress policy no longer allows."""

    def __init__(
        self, state: EgressState, close_client: Callable[[connection.Client, bool], Any]
    ) -> None:
        self._state = state
        self._close_client = close_client
        self._open: dict[str, _Open] = {}

    def __len__(self) -> int:
        return len(self._open)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # Right after authentication, against the snapshot it was checked with.
        plugin_id = flow.metadata.get(PLUGIN)
        if plugin_id is not None and not is_settled(flow):
            flow.metadata[GEN] = self._state.current.plugin_gen(plugin_id)

    def http_connected(self, flow: http.HTTPFlow) -> None:
        accepted = target(flow)
        gen = flow.metadata.get(GEN)
        if accepted is None or not isinstance(gen, int):
            return
        tunnel = _Open(
            flow.client_conn, accepted.plugin_id, gen, accepted.host, accepted.port, flow.id
        )
        self._open[flow.client_conn.id] = tunnel
        reason = refusal(self._state.current, tunnel)
        if reason is not None:  # revoked or narrowed while the upstream connection was made
            self._end(tunnel, reason)

    def client_disconnected(self, client: connection.Client) -> None:
        self._open.pop(client.id, None)

    def review(self, snap: Snapshot) -> None:
        reasons: dict[tuple[str, int, str, int], str | None] = {}  # tunnels share destinations
        for tunnel in list(self._open.values()):
            key = (tunnel.plugin_id, tunnel.gen, tunnel.host, tunnel.port)
            if key not in reasons:
                reasons[key] = refusal(snap, tunnel)
            reason = reasons[key]
            if reason is not None:
                self._end(tunnel, reason)

    def _end(self, tunnel: _Open, reason: str) -> None:
        if self._open.pop(tunnel.client.id, None) is None:
            return
        log.info("closing a tunnel of %s to %s: %s", tunnel.plugin_id, tunnel.host, reason)
        self._close_client(tunnel.client, False)
        self._state.audit.record(
            Outcome(
                "tunnel",
                tunnel.plugin_id,
                tunnel.host,
                tunnel.port,
                decision="deny",
                reason=reason,
                request_id=tunnel.request_id,
                started=time.time(),
                extra={"closed": True},
            )
        )
