"""PassthroughTunnels at hook level: a real ClientHello decides relay or interception, and
a relayed tunnel is one `tunnel` record when its client goes (or its lifetime runs out)."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from mitmproxy.proxy import context, events, layer
from mitmproxy.test import tutils

from vivified.egress.flow_state import TARGET
from vivified.egress.passthrough import CountingTCPLayer, PassthroughTunnels


def client_hello(sni: str) -> bytes:
    """The first TLS record a client sends for `sni` (made by Python's own TLS stack)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def accepted(kit, chain, host: str, passthrough: bool = True):
    flow = kit.connect_flow(f"{host}:443")
    flow.metadata[TARGET] = kit.target(host, passthrough=passthrough)
    flow.response = tutils.tresp(status_code=200, content=b"")
    await chain.fire("http_connected", flow)
    return flow


def next_layer(kit, flow, data: bytes) -> layer.NextLayer:
    nl = layer.NextLayer(context.Context(flow.client_conn, kit.tctx.options))
    nl.events.append(events.DataReceived(flow.client_conn, data))
    return nl


async def test_matching_sni_is_relayed_counted_and_recorded(kit) -> None:
    chain = kit.chain(PassthroughTunnels(kit.state, 60.0, kit.close))
    flow = await accepted(kit, chain, "pass.example.org")
    nl = next_layer(kit, flow, client_hello("pass.example.org"))
    await chain.fire("next_layer", nl)
    assert isinstance(nl.layer, CountingTCPLayer)
    assert kit.audit.events == []  # recorded when the tunnel ends
    nl.layer.outcome.bytes_in, nl.layer.outcome.bytes_out = 5000, 300
    await chain.fire("client_disconnected", flow.client_conn)
    [event] = kit.audit.events
    assert (event.action, event.actor, event.target, event.decision, event.status) == (
        "tunnel",
        "alpha",
        "pass.example.org:443",
        "allow",
        200,
    )
    assert (event.bytes_in, event.bytes_out, event.request_id) == (5000, 300, flow.id)
    assert event.detail["passthrough"] is True
    assert "duration_s" in event.detail


@pytest.mark.parametrize(
    ("data", "passthrough"),
    [
        pytest.param(client_hello("api.example.com"), True, id="sni-differs"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", True, id="plain-http-inside"),
        pytest.param(client_hello("pass.example.org"), False, id="not-a-passthrough-domain"),
    ],
)
async def test_everything_else_is_intercepted(kit, data: bytes, passthrough: bool) -> None:
    chain = kit.chain(PassthroughTunnels(kit.state, 60.0, kit.close))
    flow = await accepted(kit, chain, "pass.example.org", passthrough)
    nl = next_layer(kit, flow, data)
    await chain.fire("next_layer", nl)
    assert nl.layer is None  # mitmproxy's own choice: intercept, and the Host/SNI rules apply
    await chain.fire("client_disconnected", flow.client_conn)
    assert kit.audit.events == []


async def test_partial_client_hello_waits(kit) -> None:
    chain = kit.chain(PassthroughTunnels(kit.state, 60.0, kit.close))
    flow = await accepted(kit, chain, "pass.example.org")
    hello = client_hello("pass.example.org")
    nl = next_layer(kit, flow, hello[:20])
    await chain.fire("next_layer", nl)
    assert nl.layer is None
    nl.events.append(events.DataReceived(flow.client_conn, hello[20:]))
    await chain.fire("next_layer", nl)
    assert isinstance(nl.layer, CountingTCPLayer)


async def test_tunnel_lifetime_is_bounded(kit) -> None:
    chain = kit.chain(PassthroughTunnels(kit.state, 0.05, kit.close))
    flow = await accepted(kit, chain, "pass.example.org")
    await chain.fire("next_layer", next_layer(kit, flow, client_hello("pass.example.org")))
    for _ in range(100):
        if kit.close.closed:
            break
        await asyncio.sleep(0.01)
    assert kit.close.closed == [(flow.client_conn.id, False)]
    await chain.fire("client_disconnected", flow.client_conn)
    [event] = kit.audit.events
    assert event.reason == "tunnel_lifetime_exceeded"
