"""AddressPinning at hook level: resolve, check every address, connect to the checked one."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from vivified.egress.audit import OpenRecord
from vivified.egress.egress_policy import EgressPolicy
from vivified.egress.flow_state import DENIED, TARGET, outcome
from vivified.egress.pinning import NOT_AUTHORISED, AddressPinning
from vivified.egress.resolve import Resolver

OWN = [("127.0.0.1", 8081)]


def resolver(answers: dict[str, list[str]]) -> Resolver:
    """A resolver whose DNS is a table (unknown names fail as DNS does)."""

    async def getaddrinfo(host: str, port: int, **_kw: Any) -> list[tuple[Any, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    return Resolver(1.0, getaddrinfo)


def pinning(kit, answers: dict[str, list[str]] | None = None) -> AddressPinning:
    return AddressPinning(kit.state, resolver(answers or {}), own_listeners=OWN)


REFUSED = [
    pytest.param("private.example.org:443", 403, "blocked_private", id="override-to-private"),
    pytest.param("dns.example.org:443", 403, "blocked_private", id="dns-to-private"),
    pytest.param("mixed.example.org:443", 403, "blocked_private", id="one-bad-candidate"),
    pytest.param("nowhere.example.org:443", 502, "dns_failed", id="dns-failure"),
    pytest.param("core.example.org:8081", 403, "blocked_core_listener", id="own-listener"),
]
DNS = {"dns.example.org": ["10.0.0.5"], "mixed.example.org": ["127.0.0.1", "192.168.1.1"]}


@pytest.mark.parametrize(("authority", "status", "reason"), REFUSED)
async def test_unsafe_addresses_are_refused(kit, authority: str, status: int, reason: str) -> None:
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state), pinning(kit, DNS))
    flow = kit.connect_flow(authority)
    flow.metadata["vivified.plugin"] = "alpha"
    await chain.fire("http_connect", flow)
    assert kit.refusal(flow) == (status, reason, reason)
    assert flow.metadata[DENIED] is True
    assert TARGET not in flow.metadata
    assert flow.request.host == authority.rsplit(":", 1)[0]  # not rewritten


async def test_connect_goes_to_the_checked_address_under_its_name(kit) -> None:
    pins = pinning(kit)
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state), pins)
    flow = kit.connect_flow("API.example.com.:443")
    flow.metadata["vivified.plugin"] = "alpha"
    await chain.fire("http_connect", flow)
    assert flow.response is None
    t = flow.metadata[TARGET]
    assert (t.plugin_id, t.host, t.port, t.address, t.passthrough) == (
        "alpha",
        "api.example.com",
        443,
        "127.0.0.1",
        False,
    )
    assert flow.request.host == "127.0.0.1"
    assert flow.server_conn.sni == "api.example.com"
    o = outcome(flow)
    assert (o.host, o.address) == ("api.example.com", "127.0.0.1")
    assert o.extra == {"resolved": ["127.0.0.1"], "source": "override", "passthrough": False}


async def test_plain_request_keeps_its_name_in_the_host_header(kit) -> None:
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state), pinning(kit))
    flow = kit.plain_flow("http://api.example.com:443/x", host_header=None)
    flow.metadata["vivified.plugin"] = "alpha"
    await chain.fire("requestheaders", flow)
    assert flow.response is None
    assert flow.request.host == "127.0.0.1"
    assert flow.request.headers["Host"] == "api.example.com:443"


def connect_data(client: Any, address: tuple[str, int]) -> server_hooks.ServerConnectionHookData:
    server = tflow.tserver_conn()
    server.address = address
    return server_hooks.ServerConnectionHookData(server=server, client=client)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        pytest.param(("127.0.0.1", 443), True, id="pinned"),
        pytest.param(("127.0.0.1", 80), False, id="other-port"),
        pytest.param(("10.0.0.1", 443), False, id="other-address"),
        pytest.param(("api.example.com", 443), False, id="a-name-again"),
    ],
)
async def test_only_pinned_addresses_are_connected(kit, address, allowed: bool) -> None:
    pins = pinning(kit)
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state), pins)
    flow = kit.connect_flow("api.example.com:443")
    flow.metadata["vivified.plugin"] = "alpha"
    await chain.fire("http_connect", flow)
    data = connect_data(flow.client_conn, address)
    await chain.fire("server_connect", data)
    assert data.server.error == (None if allowed else NOT_AUTHORISED)


async def test_pins_end_with_the_client_connection(kit) -> None:
    pins = pinning(kit)
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state), pins)
    flow = kit.connect_flow("api.example.com:443")
    flow.metadata["vivified.plugin"] = "alpha"
    await chain.fire("http_connect", flow)
    await chain.fire("client_disconnected", flow.client_conn)
    data = connect_data(flow.client_conn, ("127.0.0.1", 443))
    await chain.fire("server_connect", data)
    assert data.server.error == NOT_AUTHORISED
