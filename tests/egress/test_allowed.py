"""Allowed traffic passes through a real egress process: httpx and curl, HTTP and HTTPS."""

from __future__ import annotations

import json
import subprocess

import httpx
from support.egress import Egress


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
