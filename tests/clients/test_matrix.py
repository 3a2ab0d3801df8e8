"""Every common HTTP client through a real egress proxy: allowed HTTP and HTTPS pass, denied
HTTP and HTTPS show the proxy's reason code in the client's own error text or in a field the
client exposes, and gateway calls listed in NO_PROXY go direct (issue 23; docs/clients.md).

Each client is a real program in a subprocess, configured the way docs/clients.md says. A client
whose binary is missing is skipped, with the reason."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.egress import Egress
from support.procs import clean_env

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"
REASON = "host_not_allowed"
DENIED_HOST = "evil-example.com"


@dataclass(frozen=True)
class Urls:
    allowed_http: str
    allowed_https: str
    denied_http: str
    denied_https: str
    direct: str  # a stand-in for core's gateway: 127.0.0.1, listed in NO_PROXY

    @property
    def all(self) -> list[str]:
        return [self.allowed_http, self.allowed_https, self.denied_http, self.denied_https]


def urls(eg: Egress) -> Urls:
    return Urls(
        allowed_http=f"http://api.example.com:{eg.up.http_port}/matrix-http",
        allowed_https=f"https://api.example.com:{eg.up.https_port}/matrix-https",
        denied_http=f"http://{DENIED_HOST}/",
        denied_https=f"https://{DENIED_HOST}/",
        direct=f"http://127.0.0.1:{eg.up.http_port}/direct",
    )


def proxy_env(eg: Egress, **extra: str) -> dict[str, str]:
    """The environment docs/clients.md gives a plugin: both spellings of every variable."""
    proxy = eg.proxy_url("alpha")
    env = {
        "HTTP_PROXY": proxy,
        "HTTPS_PROXY": proxy,
        "http_proxy": proxy,
        "https_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "CA_FILE": str(eg.ca_file),
        "REQUESTS_CA_BUNDLE": str(eg.ca_file),
    }
    env.update(extra)
    return env


def run(
    cmd: list[str], env: Mapping[str, str], timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[str]:
    full = clean_env({k: v for k, v in env.items()})
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        full.pop(name, None)
    full.update(env)
    return subprocess.run(
        cmd, env=full, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def json_lines(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            out[doc["url"]] = doc
    return out


def exposed(result: Mapping[str, Any]) -> str:
    """Everything a client exposes about a failed request, as one text."""
    return " ".join(str(result.get(k) or "") for k in ("error", "reason", "egress_error", "text"))


def check_results(
    results: Mapping[str, Mapping[str, Any]], u: Urls, *, direct: bool = True
) -> None:
    for url, path in ((u.allowed_http, "/matrix-http"), (u.allowed_https, "/matrix-https")):
        r = results[url]
        assert r["status"] == 200, r
        assert json.loads(r["text"])["path"] == path
    for url in (u.denied_http, u.denied_https):
        r = results[url]
        assert r["status"] in (None, 403), r
        assert REASON in exposed(r), r
    if direct:  # NO_PROXY: the gateway stand-in was reached without the proxy
        r = results[u.direct]
        assert r["status"] == 200, r
        assert json.loads(r["text"])["path"] == "/direct"


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed on this machine")
    return path


# --- Python ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    [
        pytest.param("py_requests.py", id="requests"),
        pytest.param("py_urllib.py", id="urllib"),
        pytest.param("py_httpx.py", id="httpx"),
        pytest.param("py_aiohttp.py", id="aiohttp"),
    ],
)
def test_python_clients(matrix_egress: Egress, program: str) -> None:
    u = urls(matrix_egress)
    proc = run(
        [sys.executable, str(PROGRAMS / program), *u.all, u.direct], proxy_env(matrix_egress)
    )
    results = json_lines(proc)
    check_results(results, u)
    if program != "py_aiohttp.py":  # aiohttp shows the phrase too, as `message`
        assert f"({REASON}: {DENIED_HOST})" in results[u.denied_https]["error"]


# --- curl and wget --------------------------------------------------------------------------------


def curl(eg: Egress, url: str) -> dict[str, Any]:
    """curl with the lower-case variables it reads (it ignores upper-case HTTP_PROXY)."""
    proc = run(
        [
            need("curl"),
            "-sS",
            "-v",
            "--max-time",
            "10",
            "--cacert",
            str(eg.ca_file),
            "-w",
            "\n%{http_code}",
            url,
        ],
        proxy_env(eg),
    )
    body, _, code = proc.stdout.rpartition("\n")
    status = int(code) if code.isdigit() and code != "000" else None
    error = "" if proc.returncode == 0 else proc.stderr
    return {"url": url, "status": status, "text": body, "error": error, "verbose": proc.stderr}


def test_curl(matrix_egress: Egress) -> None:
    need("curl")
    u = urls(matrix_egress)
    results = {url: curl(matrix_egress, url) for url in [*u.all, u.direct]}
    check_results(results, u)
    # curl's own error is "CONNECT tunnel failed, response 403"; -v shows the proxy's status line
    assert (
        f"< HTTP/1.1 403 Forbidden ({REASON}: {DENIED_HOST})" in results[u.denied_https]["verbose"]
    )


def wget(eg: Egress, url: str) -> dict[str, Any]:
    """wget with the lower-case variables it reads (it ignores both upper-case names)."""
    proc = run(
        [
            need("wget"),
            "-q",
            "-O",
            "-",
            "--content-on-error",
            "--tries=1",
            "--timeout=10",
            f"--ca-certificate={eg.ca_file}",
            url,
        ],
        proxy_env(eg),
    )
    # wget -q prints no error text: ask again without -q for its message when it failed
    error = ""
    if proc.returncode != 0:
        loud = run(
            [
                need("wget"),
                "-O",
                "/dev/null",
                "--tries=1",
                "--timeout=10",
                f"--ca-certificate={eg.ca_file}",
                url,
            ],
            proxy_env(eg),
        )
        error = loud.stderr
    status = 200 if proc.returncode == 0 else None
    return {"url": url, "status": status, "text": proc.stdout, "error": error}


def test_wget(matrix_egress: Egress) -> None:
    need("wget")
    u = urls(matrix_egress)
    results = {url: wget(matrix_egress, url) for url in [*u.all, u.direct]}
    check_results(results, u)
    assert f"Forbidden ({REASON}: {DENIED_HOST})" in results[u.denied_https]["error"]
    assert f"403: Forbidden ({REASON}: {DENIED_HOST})" in results[u.denied_http]["error"]


# --- Node.js (undici) -----------------------------------------------------------------------------


def node_modules() -> Path:
    """undici as pinned by tests/clients/node/package-lock.json, installed once per lock file."""
    lock = (HERE / "node" / "package-lock.json").read_bytes()
    local = HERE / "node" / "node_modules"
    if (local / "undici").is_dir():
        return local
    cache = (
        Path(tempfile.gettempdir())
        / "vivified-client-matrix"
        / hashlib.sha256(lock).hexdigest()[:16]
    )
    if not (cache / "node_modules" / "undici").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HERE / "node" / name, cache / name)
        proc = run(
            [need("npm"), "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            {"npm_config_cache": str(cache / ".npm")},
            timeout=180,
            cwd=cache,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    return cache / "node_modules"


@pytest.mark.parametrize(
    "mode", [pytest.param("env", id="env-basic"), pytest.param("bearer", id="bearer")]
)
def test_node_undici(matrix_egress: Egress, mode: str) -> None:
    node = need("node")
    modules = node_modules()
    u = urls(matrix_egress)
    env = proxy_env(
        matrix_egress,
        NODE_PATH=str(modules),
        PROXY_URL=f"http://127.0.0.1:{matrix_egress.port}",
        PLUGIN_TOKEN=matrix_egress.tokens["alpha"],
    )
    targets = [*u.all, u.direct] if mode == "env" else u.all
    results = json_lines(run([node, str(HERE / "node" / "client.js"), mode, *targets], env))
    check_results(results, u, direct=mode == "env")
    assert results[u.denied_http]["egress_error"] == REASON  # a field fetch's Response exposes


# --- Java 17 HttpClient ---------------------------------------------------------------------------


def truststore(eg: Egress, tmp: Path) -> Path:
    """The egress CA in a PKCS12 truststore, made with keytool as docs/clients.md says."""
    store = tmp / "egress-truststore.p12"
    proc = run(
        [
            need("keytool"),
            "-importcert",
            "-noprompt",
            "-alias",
            "vivified-egress",
            "-file",
            str(eg.ca_file),
            "-keystore",
            str(store),
            "-storetype",
            "PKCS12",
            "-storepass",
            "changeit",
        ],
        {},
    )
    assert proc.returncode == 0, proc.stderr
    return store


def test_java_httpclient_with_bearer_credentials(matrix_egress: Egress, tmp_path: Path) -> None:
    java = need("java")
    store = truststore(matrix_egress, tmp_path)
    u = urls(matrix_egress)
    env = {
        "PROXY_HOST": "127.0.0.1",
        "PROXY_PORT": str(matrix_egress.port),
        "PLUGIN_TOKEN": matrix_egress.tokens["alpha"],
        "TRUSTSTORE": str(store),
        "TRUSTSTORE_PASSWORD": "changeit",
        "JAVA_TOOL_OPTIONS": "",
    }
    proc = run([java, str(HERE / "java" / "EgressClient.java"), *u.all], env, timeout=90)
    results = json_lines(proc)
    check_results(results, u, direct=False)
    assert results[u.denied_http]["egress_error"] == REASON
    assert "Tunnel failed, got: 403" in results[u.denied_https]["error"]
    assert "jdk.http.auth" not in proc.stderr


def test_curl_with_bearer_proxy_header(matrix_egress: Egress) -> None:
    curl_bin = need("curl")
    eg, u = matrix_egress, urls(matrix_egress)
    base = [
        curl_bin, "-sS", "-v", "--max-time", "10", "--cacert", str(eg.ca_file),
        "-x", f"http://127.0.0.1:{eg.port}",
        "--proxy-header", f"Proxy-Authorization: Bearer {eg.tokens['alpha']}",
    ]  # fmt: skip
    ok = run([*base, u.allowed_https], {})
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["path"] == "/matrix-https"
    denied = run([*base, u.denied_https], {})
    assert f"< HTTP/1.1 403 Forbidden ({REASON}: {DENIED_HOST})" in denied.stderr
