"""Health monitoring over real processes: polls, heartbeats, gating and quarantine.

The gateways' registry is SQLite; the tests that write and read health state most (poll →
state with its history and audit, quarantine, two replicas sharing the polling) also run on a
fresh PostgreSQL database (`BACKENDS`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.audit import wait_for_audit
from support.backends import BACKENDS, registry_env, registry_url
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread
from support.waiting import eventually

FAST = {"VIVIFIED_HEALTH_INTERVAL": "0.3", "VIVIFIED_HEALTH_TIMEOUT": "0.2"}
# Where a test counts every transition: an answer of the upstream (a thread of this process)
# slower than the poll's timeout would add one, so the timeout is far above a slow answer.
STEADY = {"VIVIFIED_HEALTH_INTERVAL": "1.0", "VIVIFIED_HEALTH_TIMEOUT": "1.0"}


class Flaky:
    """A health endpoint whose answer the test scripts: ok, error or hang."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.next: list[str] = []  # modes for the next polls, before `mode` again
        self.replicas: list[tuple[float, str]] = []

    async def health(self, request: Request) -> Response:
        self.replicas.append((time.monotonic(), request.headers.get("x-vivified-replica", "")))
        mode = self.next.pop(0) if self.next else self.mode
        if mode == "error":
            return JSONResponse({"status": "broken"}, status_code=500)
        if mode == "hang":
            await asyncio.sleep(2)  # part of the test: past the health timeout (at most 1 s)
        return JSONResponse({"status": "healthy", "uptime": 12.5})

    async def item(self, _request: Request) -> Response:
        return JSONResponse({"item": 1})

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/health", self.health), Route("/api/items/{id}", self.item)]
        )


@pytest.fixture
def registry(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The gateways' registry settings: none (SQLite in the data dir) unless a test
    parametrises it (indirect) over BACKENDS, then a fresh PostgreSQL database's URL."""
    with registry_url(getattr(request, "param", "sqlite")) as url:
        yield registry_env(url)


ON_BOTH = pytest.mark.parametrize("registry", BACKENDS, indirect=True)


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, str]]:
    f = Flaky()
    with serve_in_thread(f.app()) as url:
        yield f, url


def polled_manifest(pid: str, url: str) -> dict[str, Any]:
    port = int(url.rsplit(":", 1)[1])
    return simple(pid, base_url=url, health_check={"type": "http", "port": port, "path": "/health"})


def health(c: httpx.Client, pid: str) -> dict[str, Any]:
    r = c.get(f"/plugins/{pid}/health", headers=admin_headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@ON_BOTH
def test_flaky_upstream_walks_the_states(
    tmp_path: Path, flaky: tuple[Flaky, str], registry: dict[str, str]
) -> None:
    f, url = flaky
    gw = CoreProcess("gateway", tmp_path, {**STEADY, **registry}).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            assert (
                register(c, polled_manifest("flaky", url), registration_token(c)).status_code == 201
            )
            eventually(lambda: health(c, "flaky")["state"] == "healthy")
            assert health(c, "flaky")["metrics"]["uptime"] == 12.5
            # One error (degraded after 1 failure), then polls that time out (unhealthy after 3):
            # scripted on the upstream's side, so the walk does not hang on when the test looks.
            f.next = ["error"]
            f.mode = "hang"
            eventually(lambda: health(c, "flaky")["state"] == "unhealthy")
            f.mode = "ok"
            eventually(lambda: health(c, "flaky")["state"] == "healthy")
            path = [(h["from"], h["to"]) for h in health(c, "flaky")["history"]]
            assert path == [
                ("unknown", "healthy"),
                ("healthy", "degraded"),
                ("degraded", "unhealthy"),
                ("unhealthy", "healthy"),
            ]
            record = c.get("/plugins/flaky", headers=admin_headers()).json()
            assert record["health"]["state"] == "healthy"
            audit = wait_for_audit(c, count=4, lane="health", target="flaky")
            assert [a["reason"] for a in reversed(audit)] == [
                "unknown_to_healthy",
                "healthy_to_degraded",
                "degraded_to_unhealthy",
                "unhealthy_to_healthy",
            ]
    finally:
        gw.stop()


def test_heartbeats_keep_a_plugin_healthy_and_their_absence_degrades(tmp_path: Path) -> None:
    gw = CoreProcess("gateway", tmp_path, STEADY).start()  # 2 s without a beat: degraded
    try:
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            token = register(c, simple("beater"), registration_token(c)).json()["token"]
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(5):
                r = c.post(
                    "/plugins/beater/heartbeat", json={"metrics": {"rss_mb": 40}}, headers=auth
                )
                assert r.status_code == 200
                assert r.json()["state"] == "healthy"
                time.sleep(0.2)  # part of the test: beats 0.2 s apart keep it healthy
            assert health(c, "beater")["state"] == "healthy"
            eventually(lambda: health(c, "beater")["state"] == "degraded", timeout=10)
            eventually(lambda: health(c, "beater")["state"] == "unhealthy", timeout=10)
            other = c.post("/plugins/someone-else/heartbeat", json={}, headers=auth)
            assert other.status_code == 403
            bad = c.post("/plugins/beater/heartbeat", json={"status": 5}, headers=auth)
            assert bad.status_code == 422
    finally:
        gw.stop()


@ON_BOTH
def test_auto_quarantine_disables_with_reason(
    tmp_path: Path, flaky: tuple[Flaky, str], registry: dict[str, str]
) -> None:
    f, url = flaky
    env = {
        **FAST,
        **registry,
        "VIVIFIED_HEALTH_QUARANTINE": "true",
        "VIVIFIED_HEALTH_QUARANTINE_COUNT": "1",
    }
    gw = CoreProcess("gateway", tmp_path, env).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            register(c, polled_manifest("sickly", url), registration_token(c))
            f.mode = "error"
            eventually(
                lambda: (
                    c.get("/plugins/sickly", headers=admin_headers()).json()["status"] == "disabled"
                )
            )
            items = wait_for_audit(c, action="disable", target="sickly")
            assert [(i["actor"], i["reason"]) for i in items] == [
                ("core:health", "failed_to_stay_healthy")
            ]
            # An admin re-enables it.
            assert c.post("/plugins/sickly/enable", headers=admin_headers()).status_code == 200
    finally:
        gw.stop()


@ON_BOTH
def test_two_replicas_never_poll_the_same_plugin(tmp_path: Path, registry: dict[str, str]) -> None:
    flakies = [Flaky() for _ in range(4)]
    with (
        serve_in_thread(flakies[0].app()) as u0,
        serve_in_thread(flakies[1].app()) as u1,
        serve_in_thread(flakies[2].app()) as u2,
        serve_in_thread(flakies[3].app()) as u3,
    ):
        a = CoreProcess("gateway", tmp_path, {**FAST, **registry}).start()
        b = CoreProcess("gateway", tmp_path, {**FAST, **registry}).start()
        try:
            with httpx.Client(base_url=a.url, trust_env=False) as c:
                token = registration_token(c, uses=4)
                for i, url in enumerate((u0, u1, u2, u3)):
                    assert (
                        register(c, polled_manifest(f"polled-{i}", url), token).status_code == 201
                    )
            eventually(lambda: all(f.replicas for f in flakies))  # every plugin is polled
            window = time.monotonic()
            time.sleep(1.5)  # part of the test: watch five poll intervals of both replicas
            for f in flakies:
                recent = {r for t, r in f.replicas if t >= window}
                assert len(recent) == 1, recent  # exactly one replica polls each plugin
            # Kill one replica: the other takes over all of its plugins.
            a.stop()
            stopped = time.monotonic()
            eventually(lambda: all(any(t >= stopped for t, _ in f.replicas) for f in flakies))
            handover = time.monotonic()
            time.sleep(1.5)  # part of the test: watch five poll intervals after the handover
            survivors = {r for f in flakies for t, r in f.replicas if t >= handover}
            assert len(survivors) == 1
            assert all(any(t >= handover for t, _ in f.replicas) for f in flakies)
        finally:
            a.stop()
            b.stop()


def test_an_unhealthy_target_is_refused_on_the_operator_lane(
    tmp_path: Path, flaky: tuple[Flaky, str]
) -> None:
    f, url = flaky
    gw = CoreProcess("gateway", tmp_path, FAST).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            assert (
                register(c, polled_manifest("sick", url), registration_token(c)).status_code == 201
            )
            r = register(c, simple("caller", dependencies=["sick"]), registration_token(c))
            assert r.status_code == 201, r.text
            auth = {"Authorization": f"Bearer {r.json()['token']}"}
            eventually(lambda: health(c, "sick")["state"] == "healthy")
            assert c.get("/sick/items/1", headers=auth).status_code == 200
            f.mode = "error"
            eventually(lambda: health(c, "sick")["state"] == "unhealthy")
            eventually(lambda: c.get("/sick/items/1", headers=auth).status_code == 503)
            refused = c.get("/sick/items/1", headers=auth)
            assert refused.json()["reason"] == "target_unhealthy"
            assert int(refused.headers["retry-after"]) >= 1
            f.mode = "ok"
            eventually(lambda: c.get("/sick/items/1", headers=auth).status_code == 200)
    finally:
        gw.stop()


def test_tcp_health_checks_follow_the_listener(tmp_path: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    gw = CoreProcess("gateway", tmp_path, FAST).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            m = simple(
                "tcpcheck",
                base_url=f"http://127.0.0.1:{port}",
                health_check={"type": "tcp", "port": port},
            )
            assert register(c, m, registration_token(c)).status_code == 201
            eventually(lambda: health(c, "tcpcheck")["state"] == "healthy")
            listener.close()
            eventually(lambda: health(c, "tcpcheck")["state"] == "unhealthy")
    finally:
        listener.close()
        gw.stop()


def test_a_healthy_heartbeat_does_not_lift_poll_derived_unhealthy(
    tmp_path: Path, flaky: tuple[Flaky, str]
) -> None:
    f, url = flaky
    gw = CoreProcess("gateway", tmp_path, FAST).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            r = register(c, polled_manifest("liar", url), registration_token(c))
            assert r.status_code == 201, r.text
            auth = {"Authorization": f"Bearer {r.json()['token']}"}
            f.mode = "error"
            eventually(lambda: health(c, "liar")["state"] == "unhealthy")
            for status in (None, "healthy", "ok"):
                beat = c.post(
                    "/plugins/liar/heartbeat",
                    json={} if status is None else {"status": status},
                    headers=auth,
                )
                assert beat.status_code == 200, beat.text
                assert beat.json()["state"] == "unhealthy"
                record = health(c, "liar")
                assert record["state"] == "unhealthy"
                assert record["consecutive_failures"] >= 3
                assert record["last_heartbeat"] is not None
            assert all(h["source"] != "heartbeat" for h in health(c, "liar")["history"])
            f.mode = "ok"
            eventually(lambda: health(c, "liar")["state"] == "healthy")
            worse = c.post("/plugins/liar/heartbeat", json={"status": "degraded"}, headers=auth)
            assert worse.json()["state"] == "degraded"
    finally:
        gw.stop()
