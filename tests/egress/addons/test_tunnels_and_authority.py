"""Tunnels and RequestAuthority at hook level: requests inside an accepted CONNECT act as its
plugin and must name its host (421); plain requests must be http and agree with Host (400)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vivified.egress.audit import OpenRecord
from vivified.egress.authority import RequestAuthority
from vivified.egress.flow_state import DENIED, PLUGIN, TARGET, TUNNEL, outcome
from vivified.egress.live_connections import OpenTunnels
from vivified.egress.tunnels import Tunnels
from vivified.registry.store.snapshot import Snapshot


async def accepted_tunnel(kit, chain, authority: str = "api.example.com:443"):
    """A CONNECT flow as the chain leaves it once connected (target tagged, 200)."""
    host, _, port = authority.rpartition(":")
    connect = kit.connect_flow(authority)
    connect.metadata[TARGET] = kit.target(host, int(port))
    connect.response = None
    await chain.fire("http_connected", connect)
    return connect


async def test_request_in_accepted_tunnel_acts_as_the_tunnel(kit) -> None:
    tunnels = Tunnels()
    chain = kit.chain(OpenRecord(), tunnels)
    connect = await accepted_tunnel(kit, chain)
    inner = kit.plain_flow("http://api.example.com/x")
    inner.client_conn = connect.client_conn
    await chain.fire("requestheaders", inner)
    assert inner.metadata[TUNNEL] is connect.metadata[TARGET]
    o = outcome(inner)
    assert (o.actor, o.host, o.port, o.address, o.mode) == (
        "alpha",
        "api.example.com",
        443,
        "127.0.0.1",
        "enforce",
    )
    other = kit.plain_flow("http://api.example.com/x")  # another client connection
    await chain.fire("requestheaders", other)
    assert TUNNEL not in other.metadata
    await chain.fire("client_disconnected", connect.client_conn)
    assert tunnels.accepted(connect.client_conn) is None


async def test_connect_that_was_not_accepted_opens_no_tunnel(kit) -> None:
    tunnels = Tunnels()
    chain = kit.chain(OpenRecord(), tunnels)
    refused = kit.connect_flow("api.example.com:443")  # refused: never tagged with a target
    await chain.fire("http_connected", refused)
    assert tunnels.accepted(refused.client_conn) is None


INSIDE = [
    pytest.param(True, "api.example.com", "api.example.com:443", None, id="tls-ok"),
    pytest.param(True, "API.example.com.", "api.example.com", None, id="tls-default-port"),
    pytest.param(False, None, "api.example.com:443", None, id="plain-inside-explicit-port"),
    pytest.param(False, None, "api.example.com", "host_mismatch", id="plain-inside-port-80"),
    pytest.param(True, "files.example.org", "api.example.com:443", "sni_mismatch", id="sni"),
    pytest.param(True, None, "api.example.com:443", "sni_mismatch", id="no-sni"),
    pytest.param(True, "api.example.com", "files.example.org:443", "host_mismatch", id="host"),
    pytest.param(True, "api.example.com", "api.example.com:8443", "host_mismatch", id="port"),
    pytest.param(True, "api.example.com", None, "host_mismatch", id="no-host"),
]


@pytest.mark.parametrize(("tls", "sni", "host", "reason"), INSIDE)
async def test_sni_and_host_must_name_the_connect_target(
    kit, tls: bool, sni: str | None, host: str | None, reason: str | None
) -> None:
    chain = kit.chain(OpenRecord(), RequestAuthority())
    flow = kit.plain_flow("https://api.example.com/x", host_header=host)
    flow.client_conn.tls = tls
    flow.client_conn.sni = sni
    flow.metadata[TUNNEL] = kit.target()
    await chain.fire("requestheaders", flow)
    if reason is None:
        assert flow.response is None
    else:
        assert kit.refusal(flow) == (421, reason, reason)
        assert flow.metadata[DENIED] is True


PLAIN = [
    pytest.param("http://api.example.com/x", "", None, id="ok"),
    pytest.param("http://api.example.com/x", None, None, id="no-host-header"),
    pytest.param("http://api.example.com/x", "API.example.com:80", None, id="normalised"),
    pytest.param("https://api.example.com/x", "", "bad_request", id="https-without-connect"),
    pytest.param("http://api.example.com/x", "files.example.org", "authority_mismatch", id="host"),
    pytest.param("http://api.example.com/x", "api.example.com:8080", "authority_mismatch", id="p"),
]


@pytest.mark.parametrize(("url", "host", "reason"), PLAIN)
async def test_plain_request_names_one_authority(
    kit, url: str, host: str | None, reason: str | None
) -> None:
    chain = kit.chain(OpenRecord(), RequestAuthority())
    flow = kit.plain_flow(url, host_header=host)
    await chain.fire("requestheaders", flow)
    if reason is None:
        assert flow.response is None
    else:
        assert kit.refusal(flow) == (400, reason, reason)


def narrowed(kit, **alpha: Any) -> Snapshot:
    """The kit's snapshot with alpha's registration changed (e.g. a smaller allowlist)."""
    snap = kit.snapshot()
    plugins = {**snap.plugins, "alpha": replace(snap.plugins["alpha"], **alpha)}
    return Snapshot(plugins=plugins, egress=snap.egress)


CHANGED_WHILE_CONNECTING = [
    pytest.param(lambda kit: kit.snapshot(), None, id="unchanged"),
    pytest.param(
        lambda kit: narrowed(kit, egress_domains=("api.example.com",)), None, id="other-removed"
    ),
    pytest.param(
        lambda kit: narrowed(kit, egress_domains=("*.example.org",)),
        "host_not_allowed",
        id="allowlist-narrowed",
    ),
    pytest.param(
        lambda kit: kit.snapshot(blocked_domains=["api.example.com"]),
        "blocked_domain",
        id="domain-blocked",
    ),
    pytest.param(lambda kit: kit.snapshot(allowed_ports=[80]), "port_not_allowed", id="port"),
    pytest.param(lambda kit: kit.snapshot(enabled=False), "egress_disabled", id="kill-switch"),
    pytest.param(lambda kit: narrowed(kit, gen=2), "revoked", id="revoked"),
]


@pytest.mark.parametrize(("changed", "reason"), CHANGED_WHILE_CONNECTING)
async def test_a_tunnel_narrowed_while_connecting_ends_once_connected(
    kit, changed, reason: str | None
) -> None:
    # The policy changed between the CONNECT's admission and the upstream connection.
    tunnels = OpenTunnels(kit.state, kit.close)
    chain = kit.chain(OpenRecord(), tunnels)
    connect = kit.connect_flow("api.example.com:443")
    connect.metadata[PLUGIN] = "alpha"
    await chain.fire("http_connect", connect)
    kit.holder.current = changed(kit)
    connect.metadata[TARGET] = kit.target()
    connect.response = None
    await chain.fire("http_connected", connect)
    if reason is None:
        assert (len(tunnels), kit.close.closed, kit.audit.events) == (1, [], [])
        return
    assert len(tunnels) == 0
    assert kit.close.closed == [(connect.client_conn.id, False)]
    [event] = kit.audit.events
    assert (event.actor, event.action, event.decision, event.reason) == (
        "alpha",
        "tunnel",
        "deny",
        reason,
    )
    assert event.detail["closed"] is True
    assert event.request_id == connect.id
