"""Bad destinations are refused with the right status and reason, by a real egress process."""

from __future__ import annotations

import base64
import json
import socket
import ssl

import pytest
from support.egress import BLOCKED_OVERRIDES, Egress, connect, raw_exchange, read_response

IP_SPELLINGS = [
    ("2130706433", "decimal"),
    ("0177.0.0.1", "octal"),
    ("0x7f.0.0.1", "hex-dotted"),
    ("0x7f000001", "hex"),
    ("127.1", "short"),
    ("127.0.1", "short3"),
    ("[::1]", "v6-bracketed"),
    ("[::ffff:127.0.0.1]", "v6-mapped"),
    ("[::ffff:7f00:1]", "v6-mapped-hex"),
    ("[0:0:0:0:0:0:0:1]", "v6-long"),
    ("127.0.0.1", "dotted"),
    ("169.254.169.254", "metadata"),
    ("10.0.0.1", "private"),
    ("[fd00::1]", "ula"),
    ("[64:ff9b::7f00:1]", "nat64"),
]


def assert_refused(
    status: int, headers: dict[str, str], body: bytes, code: int, reason: str
) -> None:
    assert status == code, (status, headers, body)
    assert headers.get("x-vivified-egress-error") == reason
    doc = json.loads(body)
    assert doc["reason"] == reason
    assert "detail" in doc


@pytest.mark.parametrize(("host", "label"), IP_SPELLINGS, ids=[s[1] for s in IP_SPELLINGS])
def test_ip_literal_spellings_are_addresses_never_names(
    egress: Egress, host: str, label: str
) -> None:
    status, headers, body, sock = connect(egress, f"{host}:443")
    sock.close()
    assert_refused(status, headers, body, 403, "ip_literal_not_allowed")


@pytest.mark.parametrize(
    ("name", "reason"),
    [(n, r) for n, (_a, r) in BLOCKED_OVERRIDES.items()],
    ids=list(BLOCKED_OVERRIDES),
)
def test_names_overridden_to_blocked_ranges(egress: Egress, name: str, reason: str) -> None:
    status, headers, body, sock = connect(egress, f"{name}:443")
    sock.close()
    assert_refused(status, headers, body, 403, reason)


NAME_CASES = [
    pytest.param("evil-example.com:443", 403, "host_not_allowed", id="lookalike-dash"),
    pytest.param("example.com.evil.net:443", 403, "host_not_allowed", id="lookalike-suffix"),
    pytest.param("example.org:443", 403, "host_not_allowed", id="apex-of-wildcard"),
    pytest.param("api.example.com.:8443", 403, "port_not_allowed", id="wrong-port"),
    pytest.param("api.example.com:22", 403, "port_not_allowed", id="ssh-port"),
    pytest.param("blocked.example.com:443", 403, "blocked_domain", id="blocklist"),
    pytest.param("x.blocked.example.com:443", 403, "blocked_domain", id="blocklist-sub"),
    pytest.param("nowhere.example.com:443", 502, "dns_failed", id="dns-failure"),
]


@pytest.mark.parametrize(("target", "code", "reason"), NAME_CASES)
def test_names_ports_and_lists(egress: Egress, target: str, code: int, reason: str) -> None:
    status, headers, body, sock = connect(egress, target)
    sock.close()
    assert_refused(status, headers, body, code, reason)


def test_core_listener_is_refused_even_inside_allowed_networks(egress: Egress) -> None:
    status, headers, body, sock = connect(egress, f"core.example.com:{egress.gateway_port}")
    sock.close()
    assert_refused(status, headers, body, 403, "blocked_core_listener")


CRED_CASES = [
    pytest.param(None, "missing_credentials", id="missing"),
    pytest.param("Digest abc", "malformed_credentials", id="not-basic-or-bearer"),
    pytest.param("Bearer abc", "malformed_token", id="bearer-not-a-token"),
    pytest.param("Basic !!!", "malformed_credentials", id="bad-base64"),
    pytest.param(
        "Basic " + base64.b64encode(b"alpha:not-a-token").decode(),
        "malformed_token",
        id="bad-token",
    ),
]


@pytest.mark.parametrize(("auth", "reason"), CRED_CASES)
def test_bad_credentials_are_407(egress: Egress, auth: str | None, reason: str) -> None:
    target = f"api.example.com:{egress.up.https_port}"
    status, headers, _body, sock = connect(egress, target, plugin=None, auth=auth)
    sock.close()
    assert status == 407
    assert headers["proxy-authenticate"] == 'Basic realm="vivified-egress"'
    assert headers["x-vivified-egress-error"] == reason


def test_token_of_another_plugin_is_407(egress: Egress) -> None:
    auth = "Basic " + base64.b64encode(f"beta:{egress.tokens['alpha']}".encode()).decode()
    status, headers, _body, sock = connect(
        egress, f"api.example.com:{egress.up.https_port}", plugin=None, auth=auth
    )
    sock.close()
    assert (status, headers["x-vivified-egress-error"]) == (407, "credential_mismatch")


def test_disabled_plugin_is_refused(egress: Egress) -> None:
    # gamma's token generation is still current, but the plugin is not active.
    status, headers, body, sock = connect(
        egress, f"api.example.com:{egress.up.https_port}", plugin="gamma"
    )
    sock.close()
    # a credential that verifies, for a plugin that is not active: 403, not 407
    assert_refused(status, headers, body, 403, "plugin_not_active")
    assert "proxy-authenticate" not in headers


def _tunnel(eg: Egress, host: str, sni: str) -> ssl.SSLSocket:
    status, _h, _b, sock = connect(eg, f"{host}:{eg.up.https_port}")
    assert status == 200
    return eg.ssl_context().wrap_socket(sock, server_hostname=sni)


def _get(sock: socket.socket | ssl.SSLSocket, host: str) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return read_response(sock)


def test_sni_differs_from_connect_host_is_421(egress: Egress) -> None:
    tls = _tunnel(egress, "api.example.com", "files.example.org")
    status, headers, body = _get(tls, f"api.example.com:{egress.up.https_port}")
    tls.close()
    assert_refused(status, headers, body, 421, "sni_mismatch")


def test_sni_mismatch_on_passthrough_domain_is_intercepted_and_421(egress: Egress) -> None:
    tls = _tunnel(egress, "pass.example.org", "api.example.com")
    status, headers, body = _get(tls, f"pass.example.org:{egress.up.https_port}")
    tls.close()
    assert_refused(status, headers, body, 421, "sni_mismatch")


def test_host_header_differs_inside_tunnel_is_421(egress: Egress) -> None:
    tls = _tunnel(egress, "api.example.com", "api.example.com")
    status, headers, body = _get(tls, "files.example.org")
    tls.close()
    assert_refused(status, headers, body, 421, "host_mismatch")


def test_second_request_on_keep_alive_tunnel_with_other_host_is_421(egress: Egress) -> None:
    tls = _tunnel(egress, "api.example.com", "api.example.com")
    first = _get(tls, f"api.example.com:{egress.up.https_port}")
    assert first[0] == 200
    status, headers, body = _get(tls, f"files.example.org:{egress.up.https_port}")
    tls.close()
    assert_refused(status, headers, body, 421, "host_mismatch")


def _plain(eg: Egress, url: str, host: str) -> tuple[int, dict[str, str], bytes]:
    req = (
        f"GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {eg.auth_header()}\r\n\r\n"
    ).encode()
    status, headers, body, sock = raw_exchange(eg.port, req)
    sock.close()
    return status, headers, body


def test_absolute_url_host_differs_from_host_header_is_400(egress: Egress) -> None:
    port = egress.up.http_port
    status, headers, body = _plain(
        egress, f"http://api.example.com:{port}/", f"files.example.org:{port}"
    )
    assert_refused(status, headers, body, 400, "authority_mismatch")


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/", "http://0x7f.1/", "http://[::1]/"],
    ids=["decimal", "hex-short", "v6"],
)
def test_plain_http_to_ip_literals(egress: Egress, url: str) -> None:
    host = url.split("/")[2]
    assert_refused(*_plain(egress, url, host), 403, "ip_literal_not_allowed")


def test_plain_http_lookalike(egress: Egress) -> None:
    assert_refused(
        *_plain(egress, "http://evil-example.com/", "evil-example.com"), 403, "host_not_allowed"
    )
