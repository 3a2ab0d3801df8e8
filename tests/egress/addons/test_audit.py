"""The whole chain at hook level: exactly one audit record per flow, with the right fields."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from mitmproxy import flow as mflow
from mitmproxy.test import tutils

from vivified.egress.audit import Audit, OpenRecord
from vivified.egress.authority import RequestAuthority
from vivified.egress.egress_policy import EgressPolicy
from vivified.egress.flow_state import TUNNEL
from vivified.egress.pinning import AddressPinning
from vivified.egress.proxy_auth import PluginAuth
from vivified.egress.resolve import Resolver
from vivified.egress.response_filtering import ResponseFilter
from vivified.egress.tunnels import Tunnels
from vivified.egress.upstream_connect import UpstreamConnect


async def no_dns(host: str, port: int, **_kw: Any) -> list[tuple[Any, ...]]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def chain(kit, authenticator):
    return kit.chain(
        OpenRecord(),
        Tunnels(),
        PluginAuth(authenticator),
        RequestAuthority(),
        EgressPolicy(kit.state),
        AddressPinning(kit.state, Resolver(1.0, no_dns)),
        UpstreamConnect(5.0),
        ResponseFilter(kit.state, kit.close),
        Audit(kit.state),
    )


@pytest.fixture
def alpha(kit, tokens) -> str:
    return kit.basic("alpha", tokens.issue_plugin_token("alpha", 1).token)


def fields(event) -> tuple[str, str, str, str, str, int]:
    return (event.actor, event.action, event.target, event.decision, event.reason, event.status)


REFUSED_CONNECTS = [
    pytest.param(None, "api.example.com:443", ("anonymous", "missing_credentials", 407), id="407"),
    pytest.param("alpha", "evil-example.com:443", ("alpha", "host_not_allowed", 403), id="403"),
    pytest.param("alpha", "nowhere.example.org:443", ("alpha", "dns_failed", 502), id="dns"),
]


@pytest.mark.parametrize(("who", "authority", "expected"), REFUSED_CONNECTS)
async def test_refused_connect_is_one_record(kit, chain, alpha, who, authority, expected) -> None:
    flow = kit.connect_flow(authority, alpha if who else None)
    await chain.fire("http_connect", flow)
    assert len(kit.audit.events) == 1  # written in the hook that refused it
    await chain.fire("http_connect_error", flow)  # mitmproxy follows a refusal with this hook
    [event] = kit.audit.events
    actor, reason, status = expected
    assert fields(event) == (actor, "connect", authority, "deny", reason, status)
    assert event.request_id == flow.id
    assert kit.refusal(flow) == (status, reason, reason)


async def test_accepted_connect_is_one_record_once_connected(kit, chain, alpha) -> None:
    flow = kit.connect_flow("api.example.com:443", alpha)
    await chain.fire("http_connect", flow)
    assert kit.audit.events == []  # not yet: the upstream may still fail
    flow.response = tutils.tresp(status_code=200, content=b"")
    await chain.fire("http_connected", flow)
    [event] = kit.audit.events
    assert fields(event) == ("alpha", "connect", "api.example.com:443", "allow", "allowed", 200)
    assert event.detail == {
        "host": "api.example.com",
        "port": 443,
        "mode": "enforce",
        "address": "127.0.0.1",
        "method": "CONNECT",
        "resolved": ["127.0.0.1"],
        "source": "override",
        "passthrough": False,
    }


async def test_unreachable_upstream_is_one_record(kit, chain, alpha) -> None:
    flow = kit.connect_flow("api.example.com:443", alpha)
    await chain.fire("http_connect", flow)
    flow.response = tutils.tresp(status_code=502)  # mitmproxy's own answer, replaced
    await chain.fire("http_connect_error", flow)
    [event] = kit.audit.events
    assert fields(event)[3:] == ("allow", "upstream_connect_failed", 502)
    assert flow.response.headers["x-vivified-egress-error"] == "upstream_connect_failed"


async def test_plain_request_is_one_record_with_bytes_and_no_query_values(kit, chain, alpha):
    flow = kit.plain_flow("http://api.example.com/a?token=secret&x=1", alpha)
    await chain.fire("requestheaders", flow)
    await chain.fire("request", flow)
    flow.response = tutils.tresp(content=b"hello")
    await chain.fire("responseheaders", flow)
    await chain.fire("response", flow)
    await chain.fire("response", flow)  # a second look changes nothing
    [event] = kit.audit.events
    assert fields(event) == ("alpha", "request", "api.example.com:80", "allow", "allowed", 200)
    assert event.detail["path"] == "/a?token&x"
    assert "secret" not in str(event.detail)
    assert event.detail["address"] == "127.0.0.1"
    assert (event.bytes_out, event.bytes_in) == (0, 5)


async def test_refused_request_inside_tunnel_is_one_record(kit, chain, alpha) -> None:
    connect = kit.connect_flow("api.example.com:443", alpha)
    await chain.fire("http_connect", connect)
    connect.response = tutils.tresp(status_code=200, content=b"")
    await chain.fire("http_connected", connect)
    flow = kit.plain_flow("https://api.example.com/x", host_header="files.example.org")
    flow.client_conn = connect.client_conn
    flow.client_conn.tls, flow.client_conn.sni = True, "api.example.com"
    await chain.fire("requestheaders", flow)
    await chain.fire("error", flow)
    assert TUNNEL in flow.metadata
    assert len(kit.audit.events) == 2
    event = kit.audit.events[1]
    assert fields(event) == (
        "alpha",
        "request",
        "api.example.com:443",
        "deny",
        "host_mismatch",
        421,
    )
    assert (event.detail["address"], event.detail["mode"]) == ("127.0.0.1", "enforce")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param("", "upstream_failed", id="failed"),
        pytest.param("upstream_timeout", "upstream_timeout", id="response-deadline"),
    ],
)
async def test_failed_request_is_one_record(kit, chain, alpha, reason, expected) -> None:
    flow = kit.plain_flow("http://api.example.com/x", alpha)
    await chain.fire("requestheaders", flow)
    chain_outcome = flow.metadata["vivified.outcome"]
    if reason:
        chain_outcome.reason = reason
    flow.error = mflow.Error("server closed connection")
    await chain.fire("error", flow)
    await chain.fire("error", flow)
    [event] = kit.audit.events
    assert fields(event)[3:] == ("allow", expected, 502)
    assert event.detail["error"] == "server closed connection"


async def test_request_mitmproxy_refused_is_one_bad_request_record(kit, chain) -> None:
    flow = kit.plain_flow("http://api.example.com/x", "Basic !!!")
    flow.error = mflow.Error("Received both a Transfer-Encoding and a Content-Length header")
    await chain.fire("requestheaders", flow)
    await chain.fire("error", flow)
    [event] = kit.audit.events
    assert fields(event) == (
        "anonymous",
        "request",
        "api.example.com:80",
        "deny",
        "bad_request",
        400,
    )
    assert "proxy-authorization" not in flow.request.headers


async def test_streamed_request_body_is_counted(kit, chain, alpha) -> None:
    flow = kit.plain_flow("http://api.example.com/up", alpha, transfer_encoding="chunked")
    await chain.fire("requestheaders", flow)
    assert callable(flow.request.stream)
    assert flow.request.stream(b"abc") + flow.request.stream(b"de") == b"abcde"
    flow.response = tutils.tresp(content=b"")
    await chain.fire("response", flow)
    [event] = kit.audit.events
    assert (event.bytes_out, event.bytes_in) == (5, 0)
