"""Scale-out: two gateways and an egress proxy share one registry and one NATS; a change made
through gateway A is enforced by gateway B and egress B without waiting for a periodic reload
(set to 60 s here, so only the change notice can explain a quick convergence)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.egress import raw_exchange
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token

from vivified.config.nats_server import ManagedNats

BOUND = 5.0  # generous: the notice path takes milliseconds; the periodic reload takes 60 s


@dataclass
class Stack:
    nats: ManagedNats
    nats_port: int
    a: CoreProcess
    b: CoreProcess
    egress_b: CoreProcess
    token: str

    def probe_egress(self, host: str = "api.example.com") -> str:
        cred = base64.b64encode(f"fetcher:{self.token}".encode()).decode()
        request = (
            f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n"
            f"Proxy-Authorization: Basic {cred}\r\n\r\n"
        ).encode()
        status, headers, _body, sock = raw_exchange(self.egress_b.port, request)
        sock.close()
        return headers.get("x-vivified-egress-error", str(status))


def eventually(check: Callable[[], bool], bound: float = BOUND) -> float:
    started = time.monotonic()
    while time.monotonic() - started < bound:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not enforced within {bound} s")


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    nats = ManagedNats(tmp_path / "nats")
    url = nats.start()
    port = int(url.rsplit(":", 1)[1])
    env = {
        "VIVIFIED_DATABASE_URL": db_url,
        "VIVIFIED_NATS_URL": url,
        "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": "60",
        "VIVIFIED_EGRESS_DNS_TIMEOUT": "1",
    }
    procs: list[CoreProcess] = []
    try:
        a = CoreProcess("gateway", tmp_path / "a", env).start()
        procs.append(a)
        b = CoreProcess("gateway", tmp_path / "b", env).start()
        procs.append(b)
        eg = CoreProcess("egress", tmp_path / "eg", env).start()
        procs.append(eg)
        with httpx.Client(base_url=a.url, trust_env=False, timeout=30) as c:
            m = simple("fetcher", traits=["external_service"], allowed_domains=["api.example.com"])
            r = register(c, m, registration_token(c))
            assert r.status_code == 201, r.text
            assert c.post("/plugins/fetcher/enable", headers=admin_headers()).status_code == 200
        stack = Stack(nats, port, a, b, eg, r.json()["token"])
        eventually(lambda: stack.probe_egress() != "plugin_not_active")
        yield stack
    finally:
        for p in reversed(procs):
            p.stop()
        nats.stop()


def put_allowlist(gw: CoreProcess, domains: list[str]) -> None:
    r = httpx.put(
        gw.url + "/admin/plugins/fetcher/allowed-domains",
        json={"domains": domains, "mode": "enforce"},
        headers=admin_headers(),
        trust_env=False,
    )
    assert r.status_code == 200, r.text


def own_record(gw: CoreProcess, token: str) -> int:
    return httpx.get(
        gw.url + "/plugins/fetcher", headers={"Authorization": f"Bearer {token}"}, trust_env=False
    ).status_code


def test_a_change_through_one_gateway_is_enforced_everywhere(stack: Stack) -> None:
    assert stack.probe_egress() != "host_not_allowed"  # allowed (then DNS decides)
    put_allowlist(stack.a, ["other.example.com"])
    eventually(lambda: stack.probe_egress() == "host_not_allowed")
    # revocation travels the same way: disabling on A refuses the token on B at once
    assert own_record(stack.b, stack.token) == 200
    r = httpx.post(
        stack.a.url + "/plugins/fetcher/disable", headers=admin_headers(), trust_env=False
    )
    assert r.status_code == 200, r.text
    eventually(lambda: own_record(stack.b, stack.token) == 401)
    eventually(lambda: stack.probe_egress() in {"407", "revoked", "plugin_not_active"})


def test_nats_down_lanes_keep_serving_and_catch_up_when_it_returns(stack: Stack) -> None:
    stack.nats.stop()
    # lanes serve from their snapshot meanwhile
    assert own_record(stack.b, stack.token) == 200
    assert stack.probe_egress() != "host_not_allowed"
    ready = httpx.get(stack.b.url + "/readyz", trust_env=False)
    eventually(
        lambda: (
            httpx.get(stack.b.url + "/readyz", trust_env=False).json()["checks"]["nats"]
            == "disconnected"
        )
    )
    assert ready.status_code == 200
    put_allowlist(stack.a, ["other.example.com"])  # the notice is lost: NATS is down
    time.sleep(1.0)  # part of the test: a second in which no notice can reach egress B
    assert stack.probe_egress() != "host_not_allowed"  # still the old allowlist (stale)
    stack.nats.start(port=stack.nats_port)
    eventually(lambda: stack.probe_egress() == "host_not_allowed", bound=15)
    eventually(
        lambda: (
            httpx.get(stack.b.url + "/readyz", trust_env=False).json()["checks"]["nats"] == "ok"
        ),
        bound=15,
    )


async def test_health_transitions_are_announced_on_nats(tmp_path: Path) -> None:
    import asyncio
    import json

    import nats

    server = ManagedNats(tmp_path / "nats")
    url = server.start()
    gw = CoreProcess("gateway", tmp_path / "gw", {"VIVIFIED_NATS_URL": url}).start()
    nc = await nats.connect(url)
    try:
        got: asyncio.Queue[dict[str, str]] = asyncio.Queue()

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            await got.put({"subject": msg.subject, **json.loads(msg.data)})

        await nc.subscribe("vivified.health.>", cb=on_msg)
        mirrored: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_audit(msg: nats.aio.msg.Msg) -> None:
            await mirrored.put(json.loads(msg.data))

        await nc.subscribe("vivified.audit.registry", cb=on_audit)
        async with httpx.AsyncClient(base_url=gw.url, trust_env=False) as c:
            ready = await c.get("/readyz")
            for _ in range(50):
                if ready.json()["checks"]["nats"] == "ok":
                    break
                await asyncio.sleep(0.1)
                ready = await c.get("/readyz")
            r = await c.post("/admin/registration-tokens", json={}, headers=admin_headers())
            reg = await c.post(
                "/plugins/register",
                json=simple("beater"),
                headers={"Authorization": f"Bearer {r.json()['token']}"},
            )
            token = reg.json()["token"]
            hb = await c.post(
                "/plugins/beater/heartbeat", json={}, headers={"Authorization": f"Bearer {token}"}
            )
            assert hb.status_code in (200, 202, 204), hb.text
        notice = await asyncio.wait_for(got.get(), timeout=5)
        assert notice == {
            "subject": "vivified.health.beater",
            "plugin": "beater",
            "from": "unknown",
            "to": "healthy",
        }
        # Committed audit records are mirrored with every stored column, detail decoded.
        record = await asyncio.wait_for(mirrored.get(), timeout=5)
        assert record["lane"] == "registry"
        assert record["target"] == "beater"
        assert record["id"] >= 1
        assert len(record["hash"]) == 64
        assert len(record["prev_hash"]) == 64
        assert isinstance(record["detail"], dict)
    finally:
        await nc.close()
        gw.stop()
        server.stop()
