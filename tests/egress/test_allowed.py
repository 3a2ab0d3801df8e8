"""Allowed traffic passes through a real egress process: httpx and curl, HTTP and HTTPS.

Every test runs on both registry backends: the egress reads its plugins and egress document
from SQLite or from a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.backends import BACKENDS, registry_url
from support.egress import Egress, Upstreams, connect, egress_document, start_egress


@pytest.fixture(scope="module", params=BACKENDS)
def egress(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams
) -> Iterator[Egress]:
    """This module's egress, once per registry backend (overrides the folder's SQLite one)."""
    with registry_url(request.param) as url:
        eg = start_egress(Path(tmp_path_factory.mktemp("egress")), upstreams, database_url=url)
        try:
            yield eg
        finally:
            eg.proc.stop()


def client(eg: Egress, plugin: str = "alpha") -> httpx.Client:
    return httpx.Client(
        proxy=eg.proxy_url(plugin), verify=eg.ssl_context(), timeout=10, trust_env=False
    )


def test_https_intercepted_passes_without_proxy_credentials(egress: Egress) -> None:
    with client(egress) as c:
        r = c.get(f"https://api.example.com:{egress.up.https_port}/echo?secret=1")
    assert r.status_code == 200
    seen = {k.lower() for k in r.json()["headers"]}
    assert "proxy-authorization" not in seen
    assert r.json()["headers"]["Host"] == f"api.example.com:{egress.up.https_port}"


def test_plain_http_passes_without_proxy_credentials(egress: Egress) -> None:
    with client(egress) as c:
        r = c.get(f"http://api.example.com:{egress.up.http_port}/echo")
    assert r.status_code == 200
    seen = {k.lower() for k in r.json()["headers"]}
    assert "proxy-authorization" not in seen
    assert "proxy-connection" not in seen


def test_keep_alive_tunnel_serves_several_requests(egress: Egress) -> None:
    with client(egress) as c:
        for i in range(3):
            r = c.get(f"https://sub.example.org:{egress.up.https_port}/n{i}")
            assert r.status_code == 200
            assert r.json()["path"] == f"/n{i}"


def test_curl_https_and_http(egress: Egress) -> None:
    common = [
        "curl",
        "-sS",
        "--max-time",
        "10",
        "-x",
        f"http://127.0.0.1:{egress.port}",
        "--proxy-user",
        f"alpha:{egress.tokens['alpha']}",
    ]
    out = subprocess.run(
        [
            *common,
            "--cacert",
            str(egress.ca_file),
            f"https://api.example.com:{egress.up.https_port}/curl",
        ],
        capture_output=True,
        timeout=20,
        check=True,
    )
    body = json.loads(out.stdout)
    assert body["path"] == "/curl"
    assert "Proxy-Authorization" not in body["headers"]
    out = subprocess.run(
        [*common, f"http://api.example.com:{egress.up.http_port}/plain"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert json.loads(out.stdout)["path"] == "/plain"


def test_curl_is_refused_with_reason(egress: Egress) -> None:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-x",
            f"http://127.0.0.1:{egress.port}",
            "--proxy-user",
            f"alpha:{egress.tokens['alpha']}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
            "https://evil-example.com/",
        ],
        capture_output=True,
        timeout=20,
    )
    assert out.stdout == b"403"


def test_passthrough_tunnel_is_not_intercepted(egress: Egress) -> None:
    # The upstream's own certificate arrives: only the upstream CA verifies it.
    import ssl

    ctx = ssl.create_default_context(cafile=str(egress.up.ca_file))
    with httpx.Client(proxy=egress.proxy_url(), verify=ctx, timeout=10, trust_env=False) as c:
        r = c.get(f"https://pass.example.org:{egress.up.https_port}/through")
    assert r.status_code == 200
    assert r.json()["path"] == "/through"


def _connect_answer(eg: Egress, target: str) -> tuple[int, str | None]:
    status, headers, _body, sock = connect(eg, target)
    sock.close()
    return status, headers.get("x-vivified-egress-error")


def _until(eg: Egress, target: str, want: tuple[int, str | None], bound: float = 5) -> None:
    """CONNECT answers `want` within `bound` seconds (the egress reloads every 0.5 s here)."""
    deadline = time.monotonic() + bound
    got = _connect_answer(eg, target)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.05)
        got = _connect_answer(eg, target)
    assert got == want, (target, got)


def test_a_config_change_in_the_registry_denies_then_allows_again(egress: Egress) -> None:
    """The registry's egress document is re-read: a newly blocked domain is refused with its
    reason, and allowed again once the block is lifted (restored for the module's other tests)."""
    target = f"sub.example.org:{egress.up.https_port}"
    base = egress_document(egress.up, egress.gateway_port)
    _until(egress, target, (200, None))
    try:
        blocked = [*base["blocked_domains"], "sub.example.org"]
        egress.update(doc=egress_document(egress.up, egress.gateway_port, blocked_domains=blocked))
        _until(egress, target, (403, "blocked_domain"))
        status, headers, body, sock = connect(egress, target)
        sock.close()
        assert (status, json.loads(body)["reason"]) == (403, "blocked_domain")
        assert headers["content-type"] == "application/problem+json"
    finally:
        egress.update(doc=base)
    _until(egress, target, (200, None))
    with client(egress) as c:
        r = c.get(f"https://{target}/again")
    assert (r.status_code, r.json()["path"]) == (200, "/again")
