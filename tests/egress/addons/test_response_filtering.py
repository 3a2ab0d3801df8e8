"""ResponseFilter at hook level: stripped headers, content types, size caps (streamed too)."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tutils

from vivified.egress.audit import Audit
from vivified.egress.filters import LimitedStream, ReplacementStream
from vivified.egress.flow_state import AUDITED, DENIED, TARGET, TIMED_OUT
from vivified.egress.response_filtering import ResponseFilter


def upstream_answer(kit, host: str, plugin: str = "alpha", **headers: str):
    flow = kit.plain_flow(f"https://{host}/x")
    o = kit.tag(flow, plugin)
    flow.metadata[TARGET] = kit.target(host, plugin_id=plugin)
    flow.response = tutils.tresp(headers=http.Headers(**headers), content=b"")
    return flow, o


FILTERED = [
    pytest.param(
        "files.example.org",
        {"content_type": "application/octet-stream", "content_length": "10"},
        403,
        "content_type_not_allowed",
        id="content-type",
    ),
    pytest.param(
        "api.example.com",
        {"content_type": "text/plain", "content_length": "5000"},
        502,
        "response_too_large",
        id="declared-over-cap",
    ),
]


@pytest.mark.parametrize(("host", "headers", "status", "reason"), FILTERED)
async def test_refused_response_is_replaced(kit, host, headers, status: int, reason: str) -> None:
    chain = kit.chain(ResponseFilter(kit.state, kit.close))
    flow, o = upstream_answer(kit, host, **headers)
    await chain.fire("responseheaders", flow)
    assert flow.response is not None
    assert flow.response.status_code == status
    assert flow.response.headers["x-vivified-egress-error"] == reason
    assert isinstance(flow.response.stream, ReplacementStream)
    await chain.fire("response", flow)  # the upstream sent no body: the refusal still goes
    assert kit.refusal(flow) == (status, reason, reason)
    assert (o.decision, o.reason, o.status) == ("deny", reason, status)
    assert o.extra["detail"]


PASSED = [
    pytest.param("files.example.org", {"content_type": "text/csv"}, id="allowed-type"),
    pytest.param("api.example.com", {"content_type": "application/x-anything"}, id="no-type-rule"),
    pytest.param("api.example.com", {"content_length": "1000"}, id="exactly-the-cap"),
]


@pytest.mark.parametrize(("host", "headers"), PASSED)
async def test_allowed_response_passes(kit, host: str, headers: dict[str, str]) -> None:
    chain = kit.chain(ResponseFilter(kit.state, kit.close))
    flow, o = upstream_answer(kit, host, **headers)
    await chain.fire("responseheaders", flow)
    assert flow.response.status_code == 200
    assert "x-vivified-egress-error" not in flow.response.headers
    assert (o.reason, o.status) == ("", 0)  # untouched: not refused


STRIPPED = [
    pytest.param("alpha", ["x-vivified-caller"], ["set-cookie"], id="core-headers"),
    pytest.param("phi-plug", ["x-vivified-caller", "set-cookie"], [], id="phi-loses-cookies"),
]


@pytest.mark.parametrize(("plugin", "gone", "kept"), STRIPPED)
async def test_headers_are_stripped(kit, plugin: str, gone: list[str], kept: list[str]) -> None:
    chain = kit.chain(ResponseFilter(kit.state, kit.close))
    flow, o = upstream_answer(
        kit,
        "api.example.com",
        plugin,
        content_length="2",
        x_vivified_caller="forged",
        set_cookie="session=abc",
    )
    await chain.fire("responseheaders", flow)
    for name in gone:
        assert name not in flow.response.headers
    for name in kept:
        assert name in flow.response.headers
    assert sorted(o.extra["stripped"]) == sorted(gone)


async def test_streamed_body_over_cap_is_cut_and_recorded(kit) -> None:
    chain = kit.chain(ResponseFilter(kit.state, kit.close), Audit(kit.state))
    flow, _o = upstream_answer(kit, "api.example.com", transfer_encoding="chunked")
    await chain.fire("responseheaders", flow)
    stream = flow.response.stream
    assert isinstance(stream, LimitedStream)
    assert stream(b"x" * 900) == b"x" * 900
    assert stream(b"x" * 900) == b"x" * 100  # the cap is 1000
    assert kit.close.closed == [(flow.client_conn.id, True)]
    assert flow.metadata[AUDITED] is True
    [event] = kit.audit.events
    assert (event.decision, event.reason, event.status, event.bytes_in) == (
        "deny",
        "response_too_large",
        200,
        1800,
    )


@pytest.mark.parametrize("tag", [DENIED, TIMED_OUT], ids=["proxy-refusal", "core-504"])
async def test_the_proxys_own_answers_are_not_filtered(kit, tag: str) -> None:
    chain = kit.chain(ResponseFilter(kit.state, kit.close))
    flow, _o = upstream_answer(
        kit,
        "files.example.org",
        content_type="application/problem+json",
        x_vivified_egress_error="x",
    )
    flow.metadata[tag] = True
    await chain.fire("responseheaders", flow)
    assert flow.response.status_code == 200
    assert "x-vivified-egress-error" in flow.response.headers
