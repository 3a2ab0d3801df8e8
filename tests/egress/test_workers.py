"""VIVIFIED_EGRESS_WORKERS: several mitmproxy processes on one port, supervised.

A real `vivified egress` with two workers (and a nats-server; the periodic reload is 60 s, so
only the change notice explains a quick revocation): the kernel spreads connections over
both (seen in /proc: which worker holds which connection), both append to one intact audit
chain, the supervisor's one metrics listener sums both, a revoked plugin's tunnels close on
every worker, a killed worker is replaced while the port keeps answering, SIGTERM stops all.
A lone proxy keeps its port to itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.audit import assert_chain_ok
from support.egress import (
    Egress,
    Upstreams,
    closed_by_peer,
    connect,
    free_port,
    get_inside,
    read_response,
    start_egress,
)
from support.procfs import children, established, held, listening, socket_inodes
from support.waiting import eventually

from vivified.config.bus import Bus
from vivified.config.nats_server import ManagedNats

CONNECTIONS = 32
TUNNELS = 16


class Fleet:
    def __init__(self, eg: Egress, metrics_port: int, nats_port: int) -> None:
        self.eg = eg
        self.metrics_port = metrics_port
        self.nats_port = nats_port

    @property
    def workers(self) -> set[int]:
        assert self.eg.proc.proc is not None
        return children(self.eg.proc.proc.pid)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples with these labels, from the supervisor's listener."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[Fleet]:
    base = Path(tmp_path_factory.mktemp("egress-workers"))
    nats = ManagedNats(base / "nats")
    url = nats.start()
    metrics_port = free_port()
    env = {
        "VIVIFIED_EGRESS_WORKERS": "2",
        "VIVIFIED_NATS_URL": url,
        "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": "60",
        "VIVIFIED_EGRESS_METRICS_PORT": str(metrics_port),
    }
    try:
        eg = start_egress(base / "data", upstreams, env=env)
    except BaseException:
        nats.stop()
        raise
    fleet = Fleet(eg, metrics_port, int(url.rsplit(":", 1)[1]))
    try:
        eventually(lambda: len(fleet.workers) == 2, 30, "two workers")
        assert "without VIVIFIED_NATS_URL" not in eg.proc.log()
        yield fleet
    finally:
        eg.proc.stop()
        nats.stop()


def plain_request(conn: socket.socket, eg: Egress, plugin: str = "alpha") -> int:
    """One absolute-form request through the proxy on a kept connection; its status."""
    target = f"api.example.com:{eg.up.http_port}"
    conn.sendall(
        f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n"
        f"Proxy-Authorization: {eg.auth_header(plugin)}\r\n\r\n".encode()
    )
    status, _headers, _body = read_response(conn)
    return status


def tunnel(eg: Egress, plugin: str) -> ssl.SSLSocket:
    """An intercepted CONNECT tunnel to api.example.com, TLS inside trusting core's CA."""
    status, headers, body, sock = connect(eg, f"api.example.com:{eg.up.https_port}", plugin=plugin)
    assert status == 200, (status, headers, body)
    return eg.ssl_context().wrap_socket(sock, server_hostname="api.example.com")


def announce_change(url: str) -> None:
    """A change notice on NATS, as a gateway sends after a committed change."""

    async def send() -> None:
        bus = Bus(url, name="test")
        bus.start()
        try:
            assert await bus.wait_connected(10)
            assert await bus.publish_change("plugins")
        finally:
            await bus.close()

    asyncio.run(send())


def within(check: Callable[[], bool], bound: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < bound, f"{what}: not within {bound} s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_workers_share_the_port_one_audit_chain_and_one_metrics_listener(
    fleet: Fleet,
) -> None:
    eg = fleet.eg
    workers = fleet.workers
    before = fleet.metric("vivified_egress_decisions_total", plugin="alpha", action="request")
    conns = [
        socket.create_connection(("127.0.0.1", eg.port), timeout=10) for _ in range(CONNECTIONS)
    ]
    try:
        assert [plain_request(c, eg) for c in conns] == [200] * CONNECTIONS
        spread = held(workers, established(local_port=eg.port))
        assert sum(spread.values()) == CONNECTIONS, spread
        assert all(n > 0 for n in spread.values()), spread  # both workers serve connections
    finally:
        for conn in conns:
            conn.close()
    # the supervisor's listener sums both workers' counters
    eventually(
        lambda: (
            fleet.metric("vivified_egress_decisions_total", plugin="alpha", action="request")
            == before + CONNECTIONS
        ),
        10,
        "every request counted",
    )
    assert fleet.metric("vivified_build_info") == 1  # one series, not one per worker
    assert_chain_ok(eg.proc.env)


def test_a_revoked_plugin_loses_its_tunnels_on_every_worker(fleet: Fleet) -> None:
    eg, pid = fleet.eg, "phi-plug"
    workers = fleet.workers
    # every worker is on the bus (its NATS connection is up) before the change
    eventually(
        lambda: all(held(workers, established(remote_port=fleet.nats_port)).values()),
        20,
        "every worker connected to NATS",
    )
    tunnels = [tunnel(eg, pid) for _ in range(TUNNELS)]
    try:
        spread = held(workers, established(local_port=eg.port))
        assert all(n > 0 for n in spread.values()), spread  # tunnels open on both workers
        eventually(  # counted as they open, before anything is sent inside them
            lambda: fleet.metric("vivified_egress_tunnels_open") == TUNNELS,
            10,
            "the open tunnels of both workers summed",
        )
        assert [get_inside(t, eg.up) for t in tunnels] == [200] * TUNNELS
        eg.update(plugin=(pid, {"status": "disabled"}))
        announce_change(f"nats://127.0.0.1:{fleet.nats_port}")
        within(lambda: all(closed_by_peer(t) for t in tunnels), 1.0, "every tunnel closed")
    finally:
        for t in tunnels:
            t.close()
    eventually(lambda: fleet.metric("vivified_egress_tunnels_open") == 0, 10, "none open")

    def closed_records() -> list[Any]:
        rows = eg.audit_rows()
        return [r for r in rows if r.actor == pid and r.action == "tunnel" and r.decision == "deny"]

    eventually(lambda: len(closed_records()) == TUNNELS, 10, "one record per closed tunnel")
    assert {r.reason for r in closed_records()} == {"plugin_not_active"}


@pytest.fixture
def small_fleet(tmp_path: Path, upstreams: Upstreams) -> Iterator[Egress]:
    eg = start_egress(tmp_path / "data", upstreams, env={"VIVIFIED_EGRESS_WORKERS": "2"})
    try:
        yield eg
    finally:
        eg.proc.stop()


def test_a_killed_worker_is_replaced_and_sigterm_stops_all(small_fleet: Egress) -> None:
    eg = small_fleet
    supervisor = eg.proc.proc
    assert supervisor is not None
    eventually(lambda: len(children(supervisor.pid)) == 2, 30, "two workers")
    first = children(supervisor.pid)
    log = eg.proc.log()
    assert "egress workers without VIVIFIED_NATS_URL" in log  # no NATS in this one: said so
    assert '"process":"egress-worker-1"' in log  # each worker's lines carry its name
    victim = min(first)
    (its_listener,) = socket_inodes(victim) & listening(eg.port)
    os.kill(victim, signal.SIGKILL)
    survivor = first - {victim}
    # Gone means its listener is closed, which comes after the process shows as a zombie:
    # the files close with the last of its threads. (A connection the kernel queued on it
    # before that is reset, as for any process that dies.)
    eventually(lambda: its_listener not in listening(eg.port), 30, "the victim's listener closed")
    for _ in range(20):  # new connections reach the survivor at once
        with socket.create_connection(("127.0.0.1", eg.port), timeout=10) as conn:
            assert plain_request(conn, eg) == 200
    eventually(lambda: "replaces it" in eg.proc.log(), 60, "a replacement listens")
    now = children(supervisor.pid)
    assert len(now) == 2
    assert survivor < now
    assert victim not in now
    with socket.create_connection(("127.0.0.1", eg.port), timeout=10) as conn:
        assert plain_request(conn, eg) == 200
    eg.proc.stop()
    assert supervisor.returncode == 0
    for pid in now:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the supervisor"


def test_a_lone_proxy_keeps_its_port_to_itself(egress: Egress) -> None:
    """One worker binds exactly as before: without SO_REUSEPORT, so no other process can
    join its port and take a share of its connections."""
    assert egress.proc.proc is not None
    assert children(egress.proc.proc.pid) == set()  # no supervisor, no workers
    with socket.socket() as intruder:
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError, match="Address already in use"):
            intruder.bind(("127.0.0.1", egress.port))
