"""DNS pinning as a mitmproxy addon: resolve the name, check every address, connect to that one.

After `EgressPolicy` allowed a CONNECT or plain request, the proxy resolves the name itself
(admin host overrides first, `resolve.Resolver`), refuses unless every candidate address is
safe (`vivified.policy.egress.decide_addresses`: blocked ranges, core's own listeners), and
rewrites the flow to connect to the checked address while the upstream still sees the name
(Host header, TLS SNI). The address is pinned for the client connection; `server_connect`
refuses any upstream connection to an address that was not pinned (no DNS rebinding, no
redirect to somewhere unchecked).

Tags: `flow.metadata[TARGET]` = the authorised `Target`; the record gets the address, the
resolved candidates and their source. Refusals: the policy reason (403) or `dns_failed` (502) /
`dns_timeout` (504).
"""

from __future__ import annotations

from collections.abc import Iterable

from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks

from vivified.egress.flow_state import TARGET, Target, Verdict, is_settled, outcome, tunnel, verdict
from vivified.egress.live_state import EgressState
from vivified.egress.memo import Memo, SnapshotMemo
from vivified.egress.records import Outcome
from vivified.egress.resolve import ResolveError, Resolver
from vivified.egress.responses import refuse
from vivified.policy.decision import Decision
from vivified.policy.egress import decide_addresses
from vivified.policy.egress_settings import IPAddress
from vivified.policy.hosts import Host, parse_host
from vivified.registry.store.snapshot import Snapshot

NOT_AUTHORISED = "egress: destination was not authorised"


class AddressPinning:
    """A mitmproxy addon. `own_listeners` (core's gateway and this proxy) are never reachable;
    the launcher adds the proxy's bound address once it listens."""

    def __init__(
        self,
        state: EgressState,
        resolver: Resolver,
        own_listeners: Iterable[tuple[str, int]] = (),
    ) -> None:
        self._state = state
        self._resolver = resolver
        self.own_listeners: list[tuple[str, int]] = list(own_listeners)
        self._pins: dict[str, set[tuple[str, int]]] = {}
        # Pure answers the requests of a connection ask again (see `memo`): the parsed name;
        # and on the current snapshot, whether a set of addresses is safe, and passthrough.
        self._hosts: Memo[Host] = Memo()
        self._safety: SnapshotMemo[Decision] = SnapshotMemo(state.snapshots)
        self._passthrough: SnapshotMemo[bool] = SnapshotMemo(state.snapshots)

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        allowed = verdict(flow)
        if is_settled(flow) or allowed is None:
            return
        t = await self._target(flow, allowed)
        if t is None:
            return
        o = outcome(flow)
        if o is not None:
            o.extra["passthrough"] = t.passthrough
        # Connect to exactly the checked address; the upstream TLS name stays the CONNECT name.
        flow.request.data.host = t.address
        flow.server_conn.sni = t.host
        self._pin(flow.client_conn, t)
        flow.metadata[TARGET] = t

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        allowed = verdict(flow)
        if is_settled(flow) or tunnel(flow) is not None or allowed is None:
            return  # inside a tunnel the connection is pinned already
        req = flow.request
        header = req.headers.get("host")
        t = await self._target(flow, allowed)
        if t is None:
            return
        if header is None:
            req.headers["Host"] = t.host if t.port == 80 else f"{t.host}:{t.port}"
        req.data.host = t.address
        self._pin(flow.client_conn, t)
        flow.metadata[TARGET] = t

    async def _target(self, flow: http.HTTPFlow, allowed: Verdict) -> Target | None:
        """The authorised target, or None when the flow was refused."""
        o = outcome(flow) or Outcome("", "", "", 0)
        port = flow.request.port
        raw = flow.request.host
        host = self._hosts.get(raw, lambda: parse_host(raw))
        o.host = host.value
        snap = self._state.current
        try:
            addresses, source = await self._resolver.resolve(host, port, snap.egress.host_overrides)
        except ResolveError as exc:
            refuse(flow, exc.code, str(exc))
            return None
        o.extra["resolved"] = [str(a) for a in addresses]
        o.extra["source"] = source
        safe = self._safe(snap, addresses, port)
        if not safe.allowed:
            refuse(flow, safe.reason, safe.detail)
            return None
        o.address = safe.detail
        return Target(
            allowed.plugin_id,
            host.value,
            port,
            safe.detail,
            allowed.decision,
            allowed.mode,
            self._passthrough.get(host.value, lambda s: s.egress.is_passthrough(host.value), snap),
        )

    def _safe(self, snap: Snapshot, addresses: list[IPAddress], port: int) -> Decision:
        """`decide_addresses` on `snap`, remembered for it (and for these own listeners)."""
        listeners = tuple(self.own_listeners)
        return self._safety.get(
            (tuple(addresses), port, listeners),
            lambda s: decide_addresses(addresses, port, s.egress, listeners),
            snap,
        )

    def _pin(self, client: connection.Client, t: Target) -> None:
        self._pins.setdefault(client.id, set()).add((t.address, t.port))

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        pins = self._pins.get(data.client.id, set())
        if address is None or (str(address[0]), int(address[1])) not in pins:
            data.server.error = NOT_AUTHORISED

    def client_disconnected(self, client: connection.Client) -> None:
        self._pins.pop(client.id, None)
