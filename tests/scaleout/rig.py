"""Scale-out rig: two gateways and two egress proxies on one registry and one nats-server.

The periodic safety-net reload is set to 60 s, so only the change notice on NATS can explain
a convergence within a second. Every process has its own data dir (as on separate hosts)
and the one `VIVIFIED_CA_KEY` of the deployment.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from support.egress import (
    Upstreams,
    basic,
    egress_document,
    raw_exchange,
)
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread

from vivified.config.nats_server import ManagedNats

CA_KEY = "scaleout-test-ca-key-0123456789abcdefghijklmnop"
RELOAD = "60"  # the safety net, too slow to explain a quick convergence


def within(check: Callable[[], Any], bound: float, what: str) -> float:
    """Seconds until `check()` is truthy (polled every 10 ms); fails after `bound` s."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > bound:
            raise AssertionError(f"{what}: not within {bound} s")
        time.sleep(0.01)


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text((await ws.receive_text()).upper())
    except WebSocketDisconnect:
        return


@dataclass
class Deployment:
    nats: ManagedNats
    gateways: list[CoreProcess]
    proxies: list[CoreProcess]
    up: Upstreams
    ws_url: str  # the WebSocket target app
    tokens: dict[str, str] = field(default_factory=dict)
    apart: ManagedNats | None = None  # gateway 1 and proxy 1's own nats-server, if any

    def client(self, i: int = 0) -> httpx.Client:
        return httpx.Client(base_url=self.gateways[i].url, trust_env=False, timeout=30)

    def admin(self, i: int, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.client(i) as c:
            return c.request(method, path, headers=admin_headers(), **kw)

    def register(self, manifest: dict[str, Any], *, approve: bool = False) -> str:
        """Register through gateway 0 (approving it when its traits need an admin)."""
        with self.client(0) as c:
            r = register(c, manifest, registration_token(c))
            assert r.status_code == 201, r.text
            if approve:
                e = c.post(f"/plugins/{manifest['id']}/enable", headers=admin_headers())
                assert e.status_code == 200, e.text
        token: str = r.json()["token"]
        self.tokens[manifest["id"]] = token
        for gw in self.gateways:  # every replica knows it (a change notice away)
            within(lambda g=gw: self.knows(g, manifest["id"], token), 5.0, "replicas converge")
        return token

    @staticmethod
    def knows(gw: CoreProcess, pid: str, token: str) -> bool:
        r = httpx.get(
            f"{gw.url}/plugins/{pid}",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=10,
        )
        return r.status_code == 200


def _start_all(procs: list[CoreProcess]) -> None:
    with ThreadPoolExecutor(len(procs)) as pool:
        list(pool.map(lambda p: p.start(), procs))


def start_deployment(
    base: Path,
    up: Upstreams,
    ws_url: str,
    database_url: str,
    extra: dict[str, str] | None = None,
    *,
    apart: bool = False,
) -> Deployment:
    """Two gateways and two proxies on one registry; with `apart`, gateway 1 and proxy 1 use a
    nats-server of their own, so that no change notice from the others ever reaches them."""
    nats = ManagedNats(base / "nats")
    url = nats.start()
    other = ManagedNats(base / "nats-apart") if apart else None
    try:
        other_url = other.start() if other is not None else url
    except BaseException:
        nats.stop()  # only what this call started
        raise
    env = {
        "VIVIFIED_DATABASE_URL": database_url,
        "VIVIFIED_NATS_URL": url,
        "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": RELOAD,
        "VIVIFIED_HEALTH_INTERVAL": "3600",
        "VIVIFIED_CA_KEY": CA_KEY,
        "VIVIFIED_EGRESS_UPSTREAM_CA": str(up.ca_file),
        "VIVIFIED_UPSTREAM_TIMEOUT": "5",
        **(extra or {}),
    }
    envs = [env, {**env, "VIVIFIED_NATS_URL": other_url}]
    gateways = [CoreProcess("gateway", base / f"gw{i}", envs[i]) for i in range(2)]
    proxies = [CoreProcess("egress", base / f"eg{i}", envs[i]) for i in range(2)]
    dep = Deployment(nats, gateways, proxies, up, ws_url, apart=other)
    try:
        gateways[0].start()  # the first one migrates the registry
        _start_all(gateways[1:] + proxies)
        doc = egress_document(up, gateways[0].port)
        r = dep.admin(0, "PUT", "/admin/egress", json=doc)
        assert r.status_code == 200, r.text
    except BaseException:
        stop_deployment(dep)
        raise
    return dep


def stop_deployment(dep: Deployment) -> None:
    for p in [*dep.proxies, *dep.gateways]:
        p.stop()
    dep.nats.stop()
    if dep.apart is not None:
        dep.apart.stop()


@pytest.fixture(scope="module")
def ws_target() -> Iterator[str]:
    with serve_in_thread(Starlette(routes=[WebSocketRoute("/api/chat", echo)])) as url:
        yield url


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams, ws_target: str
) -> Iterator[Deployment]:
    base = Path(tmp_path_factory.mktemp("scaleout"))
    dep = start_deployment(base, upstreams, ws_target, f"sqlite:///{base}/shared-registry.db")
    yield dep
    stop_deployment(dep)


# --- the plugins of a test ------------------------------------------------------------------


def fetcher(dep: Deployment, pid: str) -> str:
    """An egress plugin allowed to reach api.example.com; returns its token."""
    m = simple(pid, traits=["external_service"], allowed_domains=["api.example.com"])
    return dep.register(m, approve=True)


def chat_pair(dep: Deployment, suffix: str, *, depends: bool = True) -> tuple[str, str, str]:
    """A WebSocket target and a caller (depending on it unless `depends` is False):
    (target id, caller id, caller token)."""
    target, caller = f"chat-{suffix}", f"talker-{suffix}"
    dep.register(simple(target, base_url=dep.ws_url, endpoints={"chat": "/api/chat"}))
    deps = [target] if depends else []
    token = dep.register(simple(caller, dependencies=deps))
    return target, caller, token


# --- the wire -------------------------------------------------------------------------------


def jwt_header(token: str) -> dict[str, Any]:
    head = token.split(".", 1)[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return decoded


def fresh_token(gw: CoreProcess, pid: str, token: str) -> str:
    r = httpx.post(
        f"{gw.url}/plugins/{pid}/token",
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    fresh: str = r.json()["token"]
    return fresh


def tls_through(
    proxy: CoreProcess, pid: str, token: str, up: Upstreams, cafile: Path, timeout: float = 10
) -> ssl.SSLSocket:
    """A CONNECT to api.example.com through `proxy`, then TLS trusting only `cafile`."""
    target = f"api.example.com:{up.https_port}"
    request = (
        f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        f"Proxy-Authorization: {basic(pid, token)}\r\n\r\n"
    ).encode()
    status, headers, body, sock = raw_exchange(proxy.port, request, timeout=timeout)
    if status != 200:
        sock.close()  # a refusal fails this test alone, not a later one with a ResourceWarning
    assert status == 200, (status, headers, body)
    ctx = ssl.create_default_context(cafile=str(cafile))
    return ctx.wrap_socket(sock, server_hostname="api.example.com")
