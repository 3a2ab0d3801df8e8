"""The egress proxy process dies (SIGKILL) under load, inside `vivified up`.

Clients must see clean errors: a refused or reset connection at once, never a hang or a
half-answer taken for an answer. `vivified up` then brings the proxy back on the same port
(its supervisor, `_supervise` in vivified/config/up.py, restarts a dead child; a crash loop
stops it).
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support.load import Loop
from support.manifests import simple
from support.procs import admin_headers, register, registration_token
from support.up import UpProcess, alive
from support.upstream import serve_in_thread
from support.waiting import eventually

HOST = "upstream.example.com"
CLIENT_TIMEOUT = 5.0
CLEAN_ERRORS = {"ConnectError", "RemoteProtocolError", "ReadError", "WriteError", "ProxyError"}


async def hello(_request: Request) -> Response:
    return PlainTextResponse("hello")


@dataclass
class Outcome:
    what: str  # "200", another status, or the exception's class name
    seconds: float
    at: float


@dataclass
class Rig:
    up: UpProcess
    upstream_port: int
    token: str

    def fetch(self, client: httpx.Client) -> Outcome:
        started = time.monotonic()
        try:
            r = client.get(f"http://{HOST}:{self.upstream_port}/")
            what = str(r.status_code)
            if r.status_code == 200:
                assert r.text == "hello", r.text
        except httpx.HTTPError as exc:
            what = type(exc).__name__
        return Outcome(what, time.monotonic() - started, time.monotonic())

    def client(self) -> httpx.Client:
        proxy = f"http://fetcher:{self.token}@127.0.0.1:{self.up.egress_port}"
        return httpx.Client(proxy=proxy, trust_env=False, timeout=CLIENT_TIMEOUT)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    up = UpProcess(tmp_path / "data").start()
    try:
        with (
            serve_in_thread(Starlette(routes=[Route("/", hello)])) as upstream,
            httpx.Client(base_url=up.gateway_url, trust_env=False, timeout=30) as c,
        ):
            port = int(upstream.rsplit(":", 1)[1])
            r = register(c, simple("fetcher"), registration_token(c))
            assert (r.status_code, r.json()["status"]) == (201, "active"), r.text
            token = r.json()["token"]
            r = c.put(
                "/admin/plugins/fetcher/allowed-domains",
                json={"domains": [HOST], "mode": "enforce"},
                headers=admin_headers(),
            )
            assert r.status_code == 200, r.text
            doc = {
                "enabled": True,
                "blocked_domains": [],
                "allowed_networks": ["127.0.0.1/32"],
                "host_overrides": {HOST: "127.0.0.1"},
                "allowed_ports": [80, 443, port],
                "passthrough_domains": [],
                "response_filters": {},
            }
            r = c.put("/admin/egress", json=doc, headers=admin_headers())
            assert r.status_code == 200, r.text
            rig = Rig(up, port, token)
            with rig.client() as probe:
                eventually(lambda: rig.fetch(probe).what == "200", 20, "egress allows the host")
            yield rig
    finally:
        up.stop()


def loader(rig: Rig) -> Loop[Outcome]:
    client = rig.client()
    return Loop(lambda _i: rig.fetch(client), 5000, 30, pause=0.02, finish=client.close)


def kill_egress_under_load(rig: Rig) -> tuple[list[Loop[Outcome]], float]:
    loops = [loader(rig).start() for _ in range(3)]
    eventually(lambda: all(len(lp.results) >= 10 for lp in loops), 20, "load under way")
    pid = rig.up.child("egress")
    assert pid is not None
    killed_at = time.monotonic()
    import os

    os.kill(pid, signal.SIGKILL)  # a child of the `up` this test started
    eventually(lambda: not alive(pid), 10, "egress gone")
    return loops, killed_at


def refused_at_once(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_clients_see_clean_errors_when_the_egress_process_dies(rig: Rig) -> None:
    loops, killed_at = kill_egress_under_load(rig)
    try:
        eventually(
            lambda: all(any(o.at > killed_at + 0.5 for o in lp.results) for lp in loops),
            15,
            "calls after the kill",
        )
        assert refused_at_once(rig.up.egress_port)
    finally:
        for lp in loops:
            lp.stop()
        for lp in loops:
            lp.join()
    for lp in loops:
        assert not lp.errors, lp.errors
    outcomes = [o for lp in loops for o in lp.results]
    before = [o for o in outcomes if o.at < killed_at]
    after = [o for o in outcomes if o.at > killed_at + 0.5]
    assert before
    assert {o.what for o in before} == {"200"}
    assert after
    assert {o.what for o in after} <= CLEAN_ERRORS, {o.what for o in after}
    assert {o.what for o in outcomes} <= CLEAN_ERRORS | {"200"}, {o.what for o in outcomes}
    slowest = max(o.seconds for o in outcomes)
    assert slowest < CLIENT_TIMEOUT, f"a call hung {slowest:.1f} s"


def test_up_brings_a_killed_egress_process_back(rig: Rig) -> None:
    loops, _ = kill_egress_under_load(rig)
    try:
        with rig.client() as client:
            eventually(lambda: rig.fetch(client).what == "200", 15, "egress back")
        assert rig.up.proc is not None
        assert rig.up.proc.poll() is None
    finally:
        for lp in loops:
            lp.stop()
        for lp in loops:
            lp.join()


def test_up_brings_a_killed_gateway_back(tmp_path: Path) -> None:
    import os

    up = UpProcess(tmp_path / "data").start()
    try:
        with httpx.Client(base_url=up.gateway_url, trust_env=False, timeout=5) as c:
            assert c.get("/healthz").status_code == 200
            pid = up.child("gateway")
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # a child of the `up` this test started
            eventually(lambda: not alive(pid), 10, "gateway gone")

            def healthy() -> bool:
                try:
                    return c.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            eventually(healthy, 30, "gateway back on the same port")
            assert up.child("gateway") not in (None, pid)
            assert up.proc is not None
            assert up.proc.poll() is None
    finally:
        up.stop()
