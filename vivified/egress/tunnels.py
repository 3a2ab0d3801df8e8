"""Accepted CONNECT tunnels: the requests inside one act as its plugin, towards its target.

mitmproxy's `proxyauth` remembers the client connections authenticated by a CONNECT; this
addon remembers the ones whose CONNECT was accepted (authenticated, allowed, pinned and
connected) together with the target it was accepted for. It runs before `PluginAuth`, which
asks no credentials of a tagged request; `RequestAuthority` then holds the request's SNI and
Host to that target and `EgressPolicy` asks policy again (the snapshot may have changed).

Tags: `flow.metadata[TUNNEL]` = the tunnel's `Target`; the record names the tunnel's plugin,
destination, address and mode.
"""

from __future__ import annotations

from mitmproxy import connection, http

from vivified.egress.flow_state import TUNNEL, Target, outcome, target


class Tunnels:
    """A mitmproxy addon: the accepted CONNECTs, by client connection."""

    def __init__(self) -> None:
        self._accepted: dict[str, Target] = {}

    def http_connected(self, flow: http.HTTPFlow) -> None:
        accepted = target(flow)
        if accepted is not None:
            self._accepted[flow.client_conn.id] = accepted

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.error is not None:
            return  # mitmproxy refused it already: recorded as it is
        t = self._accepted.get(flow.client_conn.id)
        if t is None:
            return  # a plain-HTTP proxy request: it brings its own credentials
        flow.metadata[TUNNEL] = t
        o = outcome(flow)
        if o is not None:
            o.actor, o.host, o.port, o.address, o.mode = (
                t.plugin_id,
                t.host,
                t.port,
                t.address,
                t.mode,
            )

    def client_disconnected(self, client: connection.Client) -> None:
        self._accepted.pop(client.id, None)

    def accepted(self, client: connection.Client) -> Target | None:
        """The target `client`'s CONNECT was accepted for (for tests and diagnostics)."""
        return self._accepted.get(client.id)
