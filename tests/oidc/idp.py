"""Helpers of the OIDC tests: the real OpenID Provider (oidc-provider on Node.js), a gateway
configured for it, and a sign-in driven over plain HTTP (the browser tests use Chromium)."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from support.procs import CoreProcess, admin_headers

PROVIDER_DIR = Path(__file__).with_name("provider")
NODE_MODULES = PROVIDER_DIR / "node_modules" / "oidc-provider"
CLIENT_SECRET = "console-client-secret-0123456789abcdef"
AUTOMATION_SECRET = "automation-client-secret-0123456789"
API_AUDIENCE = "https://admin.vivified.test"
OTHER_AUDIENCE = "https://other-api.test"
# claim value -> scopes, as the operator writes [oidc_scopes]
SCOPE_TABLE = {
    "vivified-auditors": ["audit:read"],
    "vivified-admins": ["admins:manage", "audit:read", "plugins:manage"],
}
USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "email": "alice@example.com",
        "email_verified": True,
        "groups": ["vivified-auditors"],
    },
    "bob": {"email": "bob@example.com", "email_verified": True, "groups": ["marketing"]},
    "carol": {
        "email": "carol@elsewhere.test",
        "email_verified": True,
        "groups": ["vivified-admins"],
    },
    "dave": {"email": "dave@example.com", "email_verified": True, "groups": ["vivified-admins"]},
    "erin": {"email": "erin@example.com", "email_verified": True, "groups": ["vivified-auditors"]},
}


def ensure_node_modules() -> None:
    """`npm ci` in tests/oidc/provider when the pinned oidc-provider is not installed."""
    if NODE_MODULES.exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm (Node.js 20) is needed for the test OpenID Provider (tests/oidc/provider)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR, check=True)


@dataclass
class IdentityProvider:
    """The `node provider.mjs` child process; stopped by its own PID only."""

    host: str = "localhost"
    issuer: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = Path("/nonexistent")
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, log_dir: Path, timeout: float = 30) -> IdentityProvider:
        node = shutil.which("node")
        assert node, "Node.js is needed for the test OpenID Provider"
        self.log_path = log_dir / f"oidc-provider-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:  # a file, not a pipe nobody drains
            self.proc = subprocess.Popen(
                [node, "provider.mjs", self.host], cwd=PROVIDER_DIR, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the test OpenID Provider exited early:\n{self.log()}")
            ready = [ln for ln in self.log().splitlines() if ln.startswith('{"issuer"')]
            if ready:
                self.issuer = json.loads(ready[0])["issuer"]
                self.control("/test/users", USERS)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the test OpenID Provider did not start within {timeout}s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def control(self, path: str, body: Any) -> Any:
        r = httpx.post(self.issuer + path, json=body, timeout=10, trust_env=False)
        assert r.status_code == 200, r.text
        return r.json()

    def add_client(self, metadata: dict[str, Any]) -> None:
        self.clients[metadata["client_id"]] = metadata
        self.control("/test/clients", list(self.clients.values()))

    def rotate(
        self, jwk: Mapping[str, Any] | None = None, *, keep_old: bool = True, append: bool = False
    ) -> str:
        body: dict[str, Any] = {"keep_old": keep_old, "append": append}
        if jwk is not None:
            body["jwk"] = dict(jwk)
        kid: str = self.control("/test/rotate", body)["kid"]
        return kid

    def jwks(self) -> dict[str, Any]:
        r = httpx.get(self.issuer + "/jwks", timeout=10, trust_env=False)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def client_credentials(self, client_id: str, resource: str) -> str:
        """A JWT access token of the automation client for `resource`."""
        r = httpx.post(
            self.issuer + "/token",
            data={"grant_type": "client_credentials", "resource": resource, "scope": "admin"},
            auth=(client_id, AUTOMATION_SECRET),
            timeout=10,
            trust_env=False,
        )
        assert r.status_code == 200, r.text
        token: str = r.json()["access_token"]
        return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FixedPortGateway(CoreProcess):
    """A gateway on a port chosen before it starts: its public URL (and so the redirect URI
    registered at the provider) must be known in advance."""

    def __init__(self, data_dir: Path, port: int, env: Mapping[str, str]) -> None:
        super().__init__("gateway", data_dir, env)
        self.fixed_port = port

    def start(self, timeout: float = 60) -> FixedPortGateway:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / f"gateway-{time.monotonic_ns()}.port"
        cmd = [sys.executable, "-m", "vivified", "gateway", "--gateway-port", str(self.fixed_port)]
        cmd += ["--port-file", str(port_file)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            if port_file.exists():
                self.port = int(port_file.read_text())
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start within {timeout}s:\n{self.log()}")


def oidc_env(
    idp: IdentityProvider, public_url: str, client_id: str, **extra: str
) -> dict[str, str]:
    return {
        "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01",
        "VIVIFIED_PUBLIC_URL": public_url,
        "VIVIFIED_OIDC_ISSUER": idp.issuer,
        "VIVIFIED_OIDC_CLIENT_ID": client_id,
        "VIVIFIED_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "VIVIFIED_OIDC_SCOPES": json.dumps(SCOPE_TABLE),
        "VIVIFIED_OIDC_ALLOWED_EMAIL_DOMAINS": "example.com",
        "VIVIFIED_OIDC_PROVIDER_NAME": "Test IdP",
        "VIVIFIED_OIDC_API_AUDIENCE": API_AUDIENCE,
        **extra,
    }


def start_gateway(idp: IdentityProvider, data_dir: Path, **extra: str) -> FixedPortGateway:
    """A gateway registered at the provider as its own console client."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    client_id = f"vivified-{secrets.token_hex(4)}"
    idp.add_client(
        {
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [public + "/console/oidc/callback"],
            "post_logout_redirect_uris": [public + "/console/oidc/signed-out"],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }
    )
    return FixedPortGateway(data_dir, port, oidc_env(idp, public, client_id, **extra)).start()


def add_automation_client(idp: IdentityProvider, client_id: str, groups: list[str]) -> None:
    idp.add_client(
        {
            "client_id": client_id,
            "client_secret": AUTOMATION_SECRET,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
        }
    )
    idp.control("/test/automation", {client_id: {"groups": groups}})


@dataclass
class Answer:
    """Where an HTTP-driven sign-in ended: the gateway's last response."""

    response: httpx.Response
    callback_url: str = ""


def browserless(gw_url: str) -> httpx.Client:
    return httpx.Client(base_url=gw_url, timeout=30, trust_env=False)


def sign_in_over_http(
    client: httpx.Client, login: str, *, stop_at_callback: bool = False
) -> Answer:
    """Drive the sign-in as a browser would: gateway -> provider login form -> consent ->
    callback. With `stop_at_callback` the callback URL is returned unvisited."""
    r = client.get("/console/oidc/login")
    assert r.status_code == 302, r.text
    url = r.headers["location"]
    for _hop in range(20):
        parts = urlsplit(url)
        if parts.path == "/console/oidc/callback" and stop_at_callback:
            return Answer(r, url)
        r = client.get(url)
        if parts.path.startswith("/interaction/") and r.status_code == 200:
            r = client.post(url + "/login", data={"login": login})
        if r.status_code not in (302, 303):
            return Answer(r, url)
        url = urljoin(url, r.headers["location"])
    raise AssertionError("the sign-in did not finish within 20 redirects")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def admin_api(gw_url: str) -> httpx.Client:
    return httpx.Client(base_url=gw_url, timeout=30, trust_env=False, headers=admin_headers())


def audit_records(gw_url: str, **query: str) -> list[dict[str, Any]]:
    with admin_api(gw_url) as c:
        r = c.get("/admin/audit", params={"limit": "200", **query})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items
