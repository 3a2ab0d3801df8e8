"""UpstreamConnect at hook level: a CONNECT whose upstream is unreachable gets core's answer."""

from __future__ import annotations

import asyncio

import pytest
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from vivified.egress.flow_state import AUDITED, DENIED
from vivified.egress.upstream_connect import UpstreamConnect


async def test_connect_failure_is_502_upstream_connect_failed(kit) -> None:
    chain = kit.chain(UpstreamConnect(5.0))
    flow = kit.connect_flow("api.example.com:443")
    o = kit.tag(flow, "alpha")
    flow.response = None
    await chain.fire("http_connect_error", flow)
    assert kit.refusal(flow) == (502, "upstream_connect_failed", "upstream_connect_failed")
    assert (o.reason, o.status) == ("upstream_connect_failed", 502)


async def test_connect_that_runs_out_of_time_is_504_upstream_timeout(kit) -> None:
    connect = UpstreamConnect(0.05)
    chain = kit.chain(connect)
    flow = kit.connect_flow("api.example.com:443")
    o = kit.tag(flow, "alpha")
    flow.server_conn.timestamp_tcp_setup = None
    data = server_hooks.ServerConnectionHookData(server=flow.server_conn, client=flow.client_conn)

    async def opening() -> None:  # mitmproxy's connect runs in the hook's task
        await chain.fire("server_connect", data)
        await asyncio.sleep(5)

    task = asyncio.create_task(opening())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert connect.timed_out(flow.server_conn)
    await chain.fire("http_connect_error", flow)
    assert kit.refusal(flow) == (504, "upstream_timeout", "upstream_timeout")
    assert (o.reason, o.status) == ("upstream_timeout", 504)
    await chain.fire("server_disconnected", data)
    assert not connect.timed_out(flow.server_conn)


async def test_refused_connection_starts_no_timer(kit) -> None:
    connect = UpstreamConnect(0.01)
    chain = kit.chain(connect)
    server = tflow.tserver_conn()
    server.timestamp_tcp_setup = None
    server.error = "egress: destination was not authorised"
    data = server_hooks.ServerConnectionHookData(server=server, client=tflow.tclient_conn())
    await chain.fire("server_connect", data)
    await asyncio.sleep(0.05)
    assert not connect.timed_out(server)


@pytest.mark.parametrize("tag", [DENIED, AUDITED], ids=["refused", "recorded"])
async def test_the_proxys_own_refusal_stands(kit, tag: str) -> None:
    chain = kit.chain(UpstreamConnect(5.0))
    flow = kit.connect_flow("evil-example.com:443")
    o = kit.tag(flow, "alpha")
    o.reason, o.status = "host_not_allowed", 403
    flow.metadata[tag] = True
    flow.response = None
    await chain.fire("http_connect_error", flow)
    assert flow.response is None
    assert (o.reason, o.status) == ("host_not_allowed", 403)
