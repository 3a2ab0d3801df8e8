"""Response filtering (streamed), report mode, reload without restart and one audit record each."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from support.egress import PLUGINS, Egress, connect, egress_document


def client(eg: Egress, plugin: str = "alpha") -> httpx.Client:
    return httpx.Client(
        proxy=eg.proxy_url(plugin), verify=eg.ssl_context(), timeout=10, trust_env=False
    )


def test_upstream_cannot_forge_core_headers_and_phi_loses_cookies(egress: Egress) -> None:
    url = f"https://api.example.com:{egress.up.https_port}/cookie"
    with client(egress) as c:
        r = c.get(url)
    assert "x-vivified-caller" not in r.headers
    assert r.headers["set-cookie"] == "session=abc"
    with client(egress, "phi-plug") as c:
        r = c.get(url)
    assert "x-vivified-caller" not in r.headers
    assert "set-cookie" not in r.headers


def test_response_over_cap_with_length_is_refused(egress: Egress) -> None:
    with client(egress) as c:
        r = c.get(f"https://files.example.org:{egress.up.https_port}/sized?n=5000")
    assert r.status_code == 502
    assert r.headers["x-vivified-egress-error"] == "response_too_large"


def test_streamed_response_over_cap_is_cut(egress: Egress) -> None:
    with client(egress) as c:
        ok = c.get(f"https://files.example.org:{egress.up.https_port}/big?n=900")
        assert ok.status_code == 200
        assert len(ok.content) == 900
        with pytest.raises(httpx.HTTPError):
            c.get(f"https://files.example.org:{egress.up.https_port}/big?n=50000")


def test_content_type_not_allowed(egress: Egress) -> None:
    with client(egress) as c:
        r = c.get(
            f"https://files.example.org:{egress.up.https_port}/type",
            params={"ct": "application/octet-stream"},
        )
        assert r.status_code == 403
        assert r.headers["x-vivified-egress-error"] == "content_type_not_allowed"
        assert (
            c.get(
                f"https://files.example.org:{egress.up.https_port}/type", params={"ct": "text/csv"}
            ).status_code
            == 200
        )


def _refused_within(
    eg: Egress, target: str, reason: str, seconds: float, plugin: str = "alpha"
) -> None:
    """CONNECT to `target` is refused 403 with `reason` within `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while True:
        status, headers, body, sock = connect(eg, target, plugin=plugin)
        sock.close()
        got = (status, headers.get("x-vivified-egress-error"))
        if got == (403, reason) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got == (403, reason), (got, body)
    assert json.loads(body)["reason"] == reason


def _wait_rows(eg: Egress, count: int, timeout: float = 5) -> list:
    deadline = time.monotonic() + timeout
    rows: list = []
    while time.monotonic() < deadline:
        rows = eg.audit_rows()
        if len(rows) >= count:
            break
        time.sleep(0.1)
    return rows


def test_every_outcome_is_one_audit_record(fresh_egress: Egress) -> None:
    eg = fresh_egress
    with client(eg) as c:
        assert c.get(f"http://api.example.com:{eg.up.http_port}/a?token=secret").status_code == 200
        for i in range(2):  # one CONNECT + two requests
            assert c.get(f"https://api.example.com:{eg.up.https_port}/t{i}").status_code == 200
    _s, _h, _b, sock = connect(eg, "evil-example.com:443")
    sock.close()
    _s, _h, _b, sock = connect(eg, "api.example.com:443", plugin=None)
    sock.close()
    with client(eg, "beta") as c:  # report mode: allowed, audited as would-deny
        assert c.get(f"https://files.example.org:{eg.up.https_port}/r").status_code == 200
    with client(eg) as c, pytest.raises(httpx.HTTPError):
        c.get(f"https://files.example.org:{eg.up.https_port}/big?n=50000")
    eg.proc.stop()  # flushes the audit writer
    rows = eg.audit_rows()
    summary = [(r.action, r.decision, r.reason, r.status) for r in rows]
    assert len(rows) == 10, summary
    assert ("request", "allow", "allowed", 200) in summary
    assert summary.count(("connect", "allow", "allowed", 200)) == 2
    assert ("connect", "deny", "host_not_allowed", 403) in summary
    assert ("connect", "deny", "missing_credentials", 407) in summary
    assert ("connect", "report", "host_not_allowed", 200) in summary
    assert ("request", "report", "host_not_allowed", 200) in summary
    assert any(s[2] == "response_too_large" for s in summary)
    plain = next(
        r for r in rows if r.action == "request" and r.detail.get("path", "").startswith("/a")
    )
    assert "secret" not in str(plain.detail)
    assert plain.actor == "alpha"
    assert plain.detail["address"] == "127.0.0.1"
    assert plain.bytes_in > 0


def test_changes_in_the_database_apply_within_two_seconds(fresh_egress: Egress) -> None:
    eg = fresh_egress
    url = f"https://api.example.com:{eg.up.https_port}/x"
    with client(eg) as c:
        assert c.get(url).status_code == 200
    eg.update(plugin=("alpha", {"egress_domains": ["files.example.org"]}))
    _refused_within(eg, f"api.example.com:{eg.up.https_port}", "host_not_allowed", 2.0)
    eg.update(doc=egress_document(eg.up, eg.gateway_port, enabled=False))
    _refused_within(eg, f"files.example.org:{eg.up.https_port}", "egress_disabled", 2.0)
    for plugin in PLUGINS:  # every plugin, even an inactive one: the lane itself is off
        _refused_within(
            eg, f"files.example.org:{eg.up.https_port}", "egress_disabled", 0, plugin=plugin
        )


def test_connect_refused_is_502(fresh_egress: Egress) -> None:
    from support.egress import free_port

    eg = fresh_egress
    port = free_port()  # nothing listens here
    eg.update(doc=egress_document(eg.up, eg.gateway_port, allowed_ports=[eg.up.https_port, port]))
    deadline = time.monotonic() + 5  # the new document applies within two seconds
    while True:
        status, headers, _b, sock = connect(eg, f"api.example.com:{port}")
        sock.close()
        if headers.get("x-vivified-egress-error") != "port_not_allowed":
            break
        assert time.monotonic() < deadline, "the new allowed ports did not apply"
        time.sleep(0.05)
    assert (status, headers["x-vivified-egress-error"]) == (502, "upstream_connect_failed")


def test_upstream_that_does_not_answer_in_time_is_cut(fresh_egress: Egress) -> None:
    """The deadline (VIVIFIED_UPSTREAM_TIMEOUT, 3 s here) covers the response headers: plain
    HTTP gets core's 504, TLS upstreams mitmproxy's 502 (see egress/response_deadline.py)."""
    eg = fresh_egress
    with client(eg) as c:
        for url, status in (
            (f"http://api.example.com:{eg.up.http_port}/slow?s=6", 504),
            (f"https://api.example.com:{eg.up.https_port}/slow?s=6", 502),
        ):
            started = time.monotonic()
            r = c.get(url)
            assert r.status_code == status, r.text
            assert 2.5 < time.monotonic() - started < 5.5
            if status == 504:
                assert r.headers["x-vivified-egress-error"] == "upstream_timeout"
                assert r.json()["reason"] == "upstream_timeout"
        # a prompt answer on the same client still passes (the deadline is per request)
        assert c.get(f"http://api.example.com:{eg.up.http_port}/slow?s=0").status_code == 200
        assert c.get(f"https://api.example.com:{eg.up.https_port}/slow?s=0").status_code == 200
    eg.proc.stop()
    rows = [r for r in eg.audit_rows() if r.action == "request"]
    timed_out = sorted(r.status for r in rows if r.reason == "upstream_timeout")
    assert timed_out == [502, 504]
    assert len(rows) == 4


def test_passthrough_tunnel_bytes_are_counted(fresh_egress: Egress) -> None:
    import ssl

    eg = fresh_egress
    ctx = ssl.create_default_context(cafile=str(eg.up.ca_file))
    with httpx.Client(proxy=eg.proxy_url(), verify=ctx, timeout=10, trust_env=False) as c:
        r = c.get(f"https://pass.example.org:{eg.up.https_port}/sized?n=50000")
        assert r.status_code == 200
        assert len(r.content) == 50000
    eg.proc.stop()
    tunnels = [r for r in eg.audit_rows() if r.action == "tunnel"]
    assert len(tunnels) == 1
    # TLS records and headers on top of the body: more than the body, not wildly more
    assert 50000 < tunnels[0].bytes_in < 60000
    assert 300 < tunnels[0].bytes_out < 5000  # ClientHello, key exchange, the request
