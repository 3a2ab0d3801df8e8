"""Gateway calls that reached the egress proxy by mistake: 403 `gateway_via_proxy`, with the fix.

A plugin that sets `HTTP_PROXY`/`HTTPS_PROXY` for its egress sends its own calls to core's
gateway (operator lane, event lane, registration, token refresh) through the proxy too, unless
the gateway is in `NO_PROXY`. Those would be refused for unrelated reasons (an IP literal, a
port, core's own listener). This addon recognises them - the gateway's public URL, its listen
address and port, and loopback on that port - and says what to do instead. It runs before
`PluginAuth`: the hint is the same with or without proxy credentials, and tells nothing about
anyone. Requests inside an accepted tunnel were checked at the CONNECT.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mitmproxy import http

from vivified.config.settings import Settings
from vivified.egress.flow_state import is_settled, tunnel
from vivified.egress.responses import refuse
from vivified.policy.egress import GATEWAY_VIA_PROXY, is_gateway_target

_DEFAULT_PORTS = {"http": 80, "https": 443}


def gateway_endpoints(settings: Settings) -> list[tuple[str, int]]:
    """Where plugins reach the gateway: its URL (`public_url` or host:port) and listen address."""
    endpoints = [(settings.host, settings.gateway_port)]
    url = urlsplit(settings.gateway_url)
    try:
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
    except ValueError:
        port = None
    if url.hostname and port:
        endpoints.append((url.hostname, port))
    return [(h, p) for h, p in endpoints if p]  # port 0: not known to this process


def hint(settings: Settings) -> str:
    """The refusal's detail: what was hit and the fix."""
    host = urlsplit(settings.gateway_url).hostname or settings.host
    return (
        f"this request is for core's own gateway ({settings.gateway_url}), which plugins call "
        f"directly, never through the egress proxy: add {host} to NO_PROXY and no_proxy "
        f"(e.g. NO_PROXY={host},localhost,127.0.0.1)"
    )


class GatewayGuard:
    """A mitmproxy addon: refuses CONNECTs and plain requests addressed to the gateway."""

    def __init__(self, settings: Settings) -> None:
        self.endpoints = tuple(gateway_endpoints(settings))
        self._ports = frozenset(port for _host, port in self.endpoints)
        self._detail = hint(settings)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._check(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if tunnel(flow) is None:
            self._check(flow)

    def _check(self, flow: http.HTTPFlow) -> None:
        port = flow.request.port
        if port not in self._ports or is_settled(flow):
            return  # only an endpoint's port can be the gateway (`is_gateway_target`)
        if is_gateway_target(flow.request.host, port, self.endpoints):
            refuse(flow, GATEWAY_VIA_PROXY, self._detail)
