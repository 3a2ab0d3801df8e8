"""The proxy lane: a real `vivified egress` forwards the plugin's trace upstream (its own span
as the parent), replaces an invalid one, and names the trace in the flow's audit record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.egress import Egress, Upstreams, start_egress

from vivified.policy.tracecontext import parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def egress(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[Egress]:
    eg = start_egress(Path(tmp_path_factory.mktemp("egress-trace")), upstreams)
    yield eg
    eg.proc.stop()


def _through(eg: Egress, url: str, headers: dict[str, str]) -> dict[str, str]:
    """The headers the upstream received for one request through the proxy."""
    with httpx.Client(
        proxy=eg.proxy_url(), verify=eg.ssl_context(), timeout=10, trust_env=False
    ) as c:
        r = c.get(url, headers=headers)
    assert r.status_code == 200, r.text
    got: dict[str, str] = {k.lower(): v for k, v in r.json()["headers"].items()}
    return got


def _record(eg: Egress, marker: str) -> Any:
    """The audit record of the request whose path carries `marker` (bounded poll)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = [
            r
            for r in eg.audit_rows()
            if r.action == "request" and marker in str(r.detail.get("path", ""))
        ]
        if rows:
            return rows[-1]
        time.sleep(0.05)
    raise AssertionError(f"no egress audit record for {marker}")


@pytest.mark.parametrize(
    "scheme", [pytest.param("http", id="plain"), pytest.param("https", id="tls")]
)
def test_egress_forwards_the_plugins_trace(egress: Egress, scheme: str) -> None:
    port = egress.up.http_port if scheme == "http" else egress.up.https_port
    marker = f"trace-{scheme}-{time.monotonic_ns()}"
    sent = {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=3"}
    got = _through(egress, f"{scheme}://api.example.com:{port}/{marker}", sent)
    parsed = parse_traceparent(got["traceparent"])
    assert parsed is not None, got
    assert parsed[0] == TRACE
    assert parsed[1] != PARENT  # the proxy's own span is the upstream's parent
    assert got["tracestate"] == "vendor=3"
    record = _record(egress, marker)
    assert (record.decision, record.status) == ("allow", 200)
    assert record.detail["trace_id"] == TRACE


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(f"00-{'0' * 32}-{PARENT}-01", id="zero-trace"),
        pytest.param(f"ff-{TRACE}-{PARENT}-01", id="version-ff"),
        pytest.param("nonsense", id="garbage"),
    ],
)
def test_egress_replaces_an_invalid_traceparent(egress: Egress, bad: str) -> None:
    marker = f"bad-{time.monotonic_ns()}"
    url = f"http://api.example.com:{egress.up.http_port}/{marker}"
    got = _through(egress, url, {"traceparent": bad, "tracestate": "vendor=3"})
    parsed = parse_traceparent(got["traceparent"])
    assert parsed is not None, got
    assert parsed[0] not in (TRACE, "0" * 32)
    assert "tracestate" not in got
    assert _record(egress, marker).detail["trace_id"] == parsed[0]


def test_egress_starts_a_trace_when_none_is_sent(egress: Egress) -> None:
    marker = f"none-{time.monotonic_ns()}"
    got = _through(egress, f"http://api.example.com:{egress.up.http_port}/{marker}", {})
    parsed = parse_traceparent(got["traceparent"])
    assert parsed is not None, got
    assert _record(egress, marker).detail["trace_id"] == parsed[0]
