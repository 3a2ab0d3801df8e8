"""No domain fronting: a request names exactly the destination it was authorised for.

- inside an accepted CONNECT tunnel the TLS SNI and the Host header must name the CONNECT
  host (and port): otherwise 421 `sni_mismatch` / `host_mismatch`, also on the second request
  of a keep-alive tunnel;
- a plain proxy request must be `http://` (https goes through CONNECT: 400 `bad_request`) and
  its Host header, when present, must agree with the URL (400 `authority_mismatch`).

Names are compared after normalisation (`vivified.policy.hosts`), ports explicitly.
"""

from __future__ import annotations

import functools

from mitmproxy import http

from vivified.egress.flow_state import Target, is_settled, tunnel
from vivified.egress.responses import refuse
from vivified.policy.hosts import HostError, parse_host


# Both checks are pure and asked again for every request of a connection: their answers are
# remembered (a bounded LRU; the client chooses the values).
@functools.lru_cache(maxsize=4096)
def same_name(value: str | None, host: str) -> bool:
    """Whether `value` (an SNI, say) is the normalised name `host`."""
    if not value:
        return False
    try:
        return bool(parse_host(value).value == host)
    except HostError:
        return False


@functools.lru_cache(maxsize=4096)
def same_authority(authority: str, host: str, port: int, default_port: int) -> bool:
    """Whether a Host header names exactly `host:port` (after normalisation)."""
    value = authority.strip()
    hostpart, got_port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return False
        hostpart, rest = value[: end + 1], value[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return False
            got_port = int(rest[1:])
    elif value.count(":") == 1:
        hostpart, _, p = value.partition(":")
        if not p.isdigit():
            return False
        got_port = int(p)
    if got_port != port:
        return False
    try:
        expected = parse_host(host).value
        return bool(parse_host(hostpart).value == expected)
    except HostError:
        return False


class RequestAuthority:
    """A mitmproxy addon: SNI and Host agree with what the request was authorised for."""

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if is_settled(flow):
            return
        t = tunnel(flow)
        if t is not None:
            self._inside_tunnel(flow, t)
        else:
            self._plain(flow)

    def _inside_tunnel(self, flow: http.HTTPFlow, t: Target) -> None:
        client = flow.client_conn
        if client.tls and not same_name(client.sni, t.host):
            detail = f"TLS SNI {client.sni!r} differs from the CONNECT host {t.host}"
            refuse(flow, "sni_mismatch", detail)
            return
        header = flow.request.host_header
        if header is None or not same_authority(header, t.host, t.port, 443 if client.tls else 80):
            refuse(flow, "host_mismatch", f"Host {header!r} differs from the CONNECT host {t.host}")

    def _plain(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if req.scheme != "http":
            refuse(flow, "bad_request", "use CONNECT for https")
            return
        header = req.headers.get("host")
        if header is not None and not same_authority(header, req.host, req.port, 80):
            refuse(flow, "authority_mismatch", "the Host header disagrees with the request URL")
