"""Refusals every HTTP client can read: the reason code and host in the status line, the whole
answer in one write, the connection closed after a refused CONNECT, Bearer proxy credentials,
and gateway calls that went through the proxy by mistake (issue 23)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from support.egress import (
    Egress,
    Upstreams,
    raw_connect,
    raw_exchange,
    read_response,
    read_until_eof,
    start_egress,
)

PROBLEM_TYPE_BASE = "https://vivified.dev/problems/"
PUBLIC_URL = "https://core.example.com"


def _problem(body: bytes, reason: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads(body)
    assert doc["reason"] == reason
    assert doc["type"] == PROBLEM_TYPE_BASE + reason
    return doc


CONNECT_REFUSALS = [
    pytest.param(
        "evil-example.com:443",
        "alpha",
        "403 Forbidden (host_not_allowed: evil-example.com)",
        "host_not_allowed",
        id="host-not-allowed",
    ),
    pytest.param(
        "api.example.com:22",
        "alpha",
        "403 Forbidden (port_not_allowed: api.example.com)",
        "port_not_allowed",
        id="port-not-allowed",
    ),
    pytest.param(
        "api.example.com:443",
        None,
        "407 Proxy Authentication Required (missing_credentials: api.example.com)",
        "missing_credentials",
        id="no-credentials",
    ),
    pytest.param(
        "nowhere.example.com:443",
        "alpha",
        "502 Bad Gateway (dns_failed: nowhere.example.com)",
        "dns_failed",
        id="dns-failed",
    ),
]


@pytest.mark.parametrize(("target", "plugin", "status", "reason"), CONNECT_REFUSALS)
def test_refused_connect_is_one_readable_write_then_closed(
    egress: Egress, target: str, plugin: str | None, status: str, reason: str
) -> None:
    # https-proxy-agent (axios) replays only what its first read returned: head and body must
    # arrive together, and the proxy must close so clients reading to EOF finish.
    for _ in range(5):  # two writes show up in one of a few tries on loopback
        auth = None if plugin is None else egress.auth_header(plugin)
        answer = raw_connect(egress, target, auth)
        assert answer.status_line == f"HTTP/1.1 {status}"
        assert answer.first_read == answer.data, "head and body came in separate writes"
        assert answer.closed, "the proxy left the refused CONNECT's connection open"
        assert answer.headers["connection"] == "close"
        assert answer.headers["x-vivified-egress-error"] == reason
        assert len(answer.body) == int(answer.headers["content-length"])
        _problem(answer.body, reason)


PLAIN_REFUSALS = [
    pytest.param(
        "http://evil-example.com/",
        "alpha",
        "403 Forbidden (host_not_allowed: evil-example.com)",
        "host_not_allowed",
        id="host-not-allowed",
    ),
    pytest.param(
        "http://api.example.com/",
        None,
        "407 Proxy Authentication Required (missing_credentials: api.example.com)",
        "missing_credentials",
        id="no-credentials",
    ),
]


@pytest.mark.parametrize(("url", "plugin", "status", "reason"), PLAIN_REFUSALS)
def test_refused_plain_request_names_reason_and_host(
    egress: Egress, url: str, plugin: str | None, status: str, reason: str
) -> None:
    host = url.split("/")[2]
    auth = "" if plugin is None else f"Proxy-Authorization: {egress.auth_header(plugin)}\r\n"
    req = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", egress.port), timeout=10)
    sock.sendall(req)
    answer = read_until_eof(sock)
    assert answer.status_line == f"HTTP/1.1 {status}"
    assert answer.headers["x-vivified-egress-error"] == reason
    _problem(answer.body, reason)


def test_refusal_inside_a_tunnel_uses_the_common_problem_type(egress: Egress) -> None:
    status, _h, _b, sock = raw_exchange(
        egress.port,
        (
            f"CONNECT api.example.com:{egress.up.https_port} HTTP/1.1\r\n"
            f"Proxy-Authorization: {egress.auth_header()}\r\n\r\n"
        ).encode(),
    )
    assert status == 200
    tls = egress.ssl_context().wrap_socket(sock, server_hostname="api.example.com")
    tls.sendall(b"GET / HTTP/1.1\r\nHost: files.example.org\r\n\r\n")
    status, headers, body = read_response(tls)
    tls.close()
    assert (status, headers["x-vivified-egress-error"]) == (421, "host_mismatch")
    _problem(body, "host_mismatch")


# --- Bearer proxy credentials (Java sends no Basic on CONNECT) ---------------------------------


def _audited(eg: Egress, match: Any) -> list[Any]:
    """The egress audit records `match` accepts, once written (batches, off the request path)."""
    deadline = time.monotonic() + 10
    rows = [r for r in eg.audit_rows() if match(r)]
    while not rows and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = [r for r in eg.audit_rows() if match(r)]
    return rows


def test_bearer_credentials_open_a_tunnel(egress: Egress) -> None:
    target = f"sub.example.org:{egress.up.https_port}"  # no other test of this module uses it
    status, _h, _b, sock = raw_exchange(
        egress.port,
        (
            f"CONNECT {target} HTTP/1.1\r\n"
            f"Proxy-Authorization: {egress.bearer_header('alpha')}\r\n\r\n"
        ).encode(),
    )
    assert status == 200
    tls = egress.ssl_context().wrap_socket(sock, server_hostname="sub.example.org")
    tls.sendall(f"GET /b HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    status, _headers, body = read_response(tls)
    tls.close()
    assert status == 200
    assert json.loads(body)["path"] == "/b"
    rows = _audited(egress, lambda r: r.action == "connect" and r.target == target)
    assert [(r.actor, r.status) for r in rows] == [("alpha", 200)]  # the token's subject


def test_bearer_credentials_on_plain_http(egress: Egress) -> None:
    url = f"http://api.example.com:{egress.up.http_port}/plain"
    req = (
        f"GET {url} HTTP/1.1\r\nHost: api.example.com:{egress.up.http_port}\r\n"
        f"Proxy-Authorization: {egress.bearer_header('beta')}\r\n\r\n"
    ).encode()
    status, _headers, body, sock = raw_exchange(egress.port, req)
    sock.close()
    assert status == 200
    assert json.loads(body)["path"] == "/plain"


BAD_BEARER = [
    pytest.param("Bearer not-a-token", "malformed_token", id="not-a-token"),
    pytest.param("Bearer", "malformed_credentials", id="empty"),
    pytest.param("Bearer a b", "malformed_credentials", id="two-words"),
]


@pytest.mark.parametrize(("auth", "reason"), BAD_BEARER)
def test_bad_bearer_credentials_are_407(egress: Egress, auth: str, reason: str) -> None:
    answer = raw_connect(egress, f"api.example.com:{egress.up.https_port}", auth)
    assert answer.status_line.startswith(f"HTTP/1.1 407 Proxy Authentication Required ({reason}")
    assert answer.headers["x-vivified-egress-error"] == reason


# --- gateway calls through the proxy ------------------------------------------------------------


@pytest.fixture(scope="module")
def egress_public(
    tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams
) -> Iterator[Egress]:
    """An egress proxy whose gateway is published as https://core.example.com."""
    eg = start_egress(
        Path(tmp_path_factory.mktemp("egress-public")),
        upstreams,
        env={"VIVIFIED_PUBLIC_URL": PUBLIC_URL},
    )
    yield eg
    eg.proc.stop()


def _gateway_cases(eg: Egress) -> list[tuple[str, str]]:
    port = eg.gateway_port
    return [
        ("connect", f"127.0.0.1:{port}"),
        ("connect", f"localhost:{port}"),
        ("plain", f"http://127.0.0.1:{port}/plugins/alpha"),
        ("plain", f"http://localhost:{port}/events"),
        ("plain", f"http://2130706433:{port}/events"),
    ]


def _ask(
    eg: Egress, kind: str, target: str, *, credentials: bool = True
) -> tuple[int, dict[str, str], bytes]:
    auth = f"Proxy-Authorization: {eg.auth_header()}\r\n" if credentials else ""
    if kind == "connect":
        req = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"
    else:
        host = target.split("/")[2]
        req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n"
    status, headers, body, sock = raw_exchange(eg.port, req.encode())
    sock.close()
    return status, headers, body


def _assert_gateway_refusal(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 403, (status, headers, body)
    assert headers["x-vivified-egress-error"] == "gateway_via_proxy"
    doc = _problem(body, "gateway_via_proxy")
    assert "NO_PROXY" in str(doc["detail"])


def test_gateway_calls_through_the_proxy_are_refused_with_a_hint(egress: Egress) -> None:
    for kind, target in _gateway_cases(egress):
        _assert_gateway_refusal(*_ask(egress, kind, target))


def test_gateway_hint_does_not_need_proxy_credentials(egress: Egress) -> None:
    kind, target = _gateway_cases(egress)[2]
    _assert_gateway_refusal(*_ask(egress, kind, target, credentials=False))


def test_gateway_public_url_through_the_proxy_is_refused(egress_public: Egress) -> None:
    _assert_gateway_refusal(*_ask(egress_public, "connect", "core.example.com:443"))
    _assert_gateway_refusal(*_ask(egress_public, "connect", "CORE.example.com.:443"))
    # another port of that name is not the gateway: the usual rules apply
    status, headers, _body = _ask(egress_public, "connect", "core.example.com:22")
    assert (status, headers["x-vivified-egress-error"]) == (403, "port_not_allowed")


def test_gateway_refusal_is_audited(egress: Egress) -> None:
    _ask(egress, "plain", f"http://127.0.0.1:{egress.gateway_port}/audited")
    rows = _audited(egress, lambda r: r.reason == "gateway_via_proxy")
    assert rows
    assert (rows[-1].decision, rows[-1].status) == ("deny", 403)


# --- the CA names the deployment ------------------------------------------------------------------


def test_egress_ca_is_named_for_the_deployment(egress: Egress, egress_public: Egress) -> None:
    names = []
    for eg in (egress, egress_public):
        cert = x509.load_pem_x509_certificate(eg.ca_file.read_bytes())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        assert isinstance(cn, str)
        assert cn.startswith("Vivified egress CA ")
        assert org == "Vivified"
        assert "mitmproxy" not in cert.subject.rfc4514_string().lower()
        names.append(cn)
    assert names[0] != names[1]  # one CA per deployment, told apart in every trust store
    # the leaf certificates the proxy issues chain to it (and the file names did not change)
    assert egress.ca_file.name == "mitmproxy-ca-cert.pem"
    ssl.create_default_context(cafile=str(egress.ca_file))
