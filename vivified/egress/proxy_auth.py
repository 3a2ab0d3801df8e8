"""Proxy authentication as a mitmproxy addon: who is asking, or 407.

Like mitmproxy's own `proxyauth` addon, with core's credentials: `Proxy-Authorization: Basic
base64(plugin-id:token)` or `Bearer token` on every CONNECT and plain-HTTP request, checked by
`auth.ProxyAuthenticator`. The hop-by-hop proxy headers never travel upstream. A request inside
an accepted CONNECT tunnel carries no credentials: it acts as the tunnel's plugin (tagged by
`tunnels.Tunnels`, which runs before this addon).

Tags: `flow.metadata[PLUGIN]` = the plugin id; on failure the flow is refused (407, the reason
code in `X-Vivified-Egress-Error`, the claimed id as the record's actor, `claimed:<id>` like
the gateway's, see `vivified.registry.audit.bounds.claimed`).

Back-pressure: while the audit trail's backlog is at its bound (`live_state.AuditTrail`), a
new CONNECT or request waits here before anything else is done for it, so a slow audit store
slows new work instead of piling up records in memory.
"""

from __future__ import annotations

from mitmproxy import http

from vivified.egress.auth import AuthResult, ProxyAuthenticator
from vivified.egress.flow_state import PLUGIN, is_settled, outcome, tunnel
from vivified.egress.headers import native, take
from vivified.egress.live_state import AuditTrail
from vivified.egress.responses import refuse
from vivified.registry.audit.bounds import claimed

HOP_HEADERS = ("proxy-authorization", "proxy-connection")
_HOP = frozenset(name.encode() for name in HOP_HEADERS)
_AUTHORIZATION = b"proxy-authorization"
CHALLENGE_DETAIL = (
    "proxy credentials required: Proxy-Authorization: Basic base64(plugin-id:token) "
    "(the proxy URL's user:password) or Bearer <plugin token>"
)


def _take_credentials(flow: http.HTTPFlow) -> list[str]:
    """The `Proxy-Authorization` values; the hop-by-hop proxy headers are removed (one walk)."""
    found = take(flow.request.headers, _HOP)
    return [native(v) for v in found.get(_AUTHORIZATION, ())]


class PluginAuth:
    """A mitmproxy addon: authenticates the plugin behind each CONNECT and plain request."""

    def __init__(self, authenticator: ProxyAuthenticator, trail: AuditTrail | None = None) -> None:
        self._authenticator = authenticator
        self._trail = trail

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if self._trail is not None and self._trail.saturated:
            await self._trail.room()
        values = _take_credentials(flow)
        if is_settled(flow):
            return  # refused before (a gateway call): that answer stands
        self._apply(flow, await self._authenticator.authenticate(values))

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._trail is not None and self._trail.saturated:
            await self._trail.room()
        values = _take_credentials(flow)  # hop headers go inside tunnels and on refusals too
        if is_settled(flow) or tunnel(flow) is not None:
            return
        self._apply(flow, await self._authenticator.authenticate(values))

    def _apply(self, flow: http.HTTPFlow, result: AuthResult) -> None:
        o = outcome(flow)
        if not result.ok:
            if o is not None:  # only a claim: never recorded as if it were a known plugin
                o.actor = claimed(result.claimed_id) if result.claimed_id else ""
            refuse(flow, result.reason, CHALLENGE_DETAIL)
            return
        assert result.plugin_id is not None
        if o is not None:
            o.actor = result.plugin_id
        flow.metadata[PLUGIN] = result.plugin_id
