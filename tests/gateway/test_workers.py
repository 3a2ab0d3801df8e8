"""VIVIFIED_GATEWAY_WORKERS: several gateway processes on one port, supervised.

A real `vivified gateway` with two workers: the kernel spreads connections over both (seen
in /proc: which worker holds which connection), both append to one intact audit chain, a
worker that dies is replaced while the other serves, and stopping the gateway stops all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.audit import assert_chain_ok
from support.procfs import children, established, listening, socket_inodes
from support.procs import CoreProcess, admin_headers
from support.waiting import eventually

from vivified.config.children import ChildFailed
from vivified.gateway.workers import MAX_RESTARTS, Workers

CONNECTIONS = 48


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[CoreProcess]:
    gw = CoreProcess("gateway", tmp_path, {"VIVIFIED_GATEWAY_WORKERS": "2"}).start(timeout=120)
    try:
        yield gw
    finally:
        gw.stop()


def lane_call(conn: socket.socket, target: str) -> bytes:
    """One operator-lane call without a token (refused 401, audited) on a kept connection."""
    conn.sendall(f"GET /{target}/x HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(65536)
        assert chunk, "the gateway closed the connection"
        answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_workers_share_the_port_and_one_audit_chain(gateway: CoreProcess) -> None:
    assert gateway.proc is not None
    workers = children(gateway.proc.pid)
    assert len(workers) == 2
    conns = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(CONNECTIONS)]
    try:
        statuses = [lane_call(conn, "nobody") for conn in conns]
        assert all(s.startswith(b"HTTP/1.1 401") for s in statuses), statuses
        ours = established(local_port=gateway.port)
        held = {pid: len(socket_inodes(pid) & ours) for pid in workers}
        assert sum(held.values()) == CONNECTIONS, held
        assert all(n > 0 for n in held.values()), held  # both workers serve connections
    finally:
        for conn in conns:
            conn.close()
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as c:

        def recorded() -> int:
            params = {"lane": "operator", "target": "claimed:nobody", "limit": "1000"}
            r = c.get("/admin/audit", params=params, headers=admin_headers())
            assert r.status_code == 200, r.text
            return len(r.json()["items"])

        eventually(lambda: recorded() >= CONNECTIONS, timeout=60)
        assert recorded() == CONNECTIONS
    assert_chain_ok(gateway.env)


def test_a_dead_worker_is_replaced_and_stopping_ends_all(gateway: CoreProcess) -> None:
    assert gateway.proc is not None
    first = children(gateway.proc.pid)
    victim = min(first)
    (its_listener,) = socket_inodes(victim) & listening(gateway.port)
    os.kill(victim, signal.SIGKILL)
    survivor = first - {victim}
    eventually(lambda: victim not in children(gateway.proc.pid), timeout=60)  # type: ignore[union-attr]
    # A zombie can still hold its listener for a moment: wait until the kernel closed it.
    eventually(lambda: its_listener not in listening(gateway.port), timeout=60)
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30) as c:
        # New connections reach the survivor at once: the dead process's listener is gone.
        for _ in range(20):
            assert c.get("/readyz", headers={"Connection": "close"}).status_code == 200
        eventually(lambda: "replaces it" in gateway.log(), timeout=60)  # the replacement listens
        now = children(gateway.proc.pid)
        assert len(now) == 2
        assert survivor < now
        assert victim not in now
        assert c.get("/readyz").status_code == 200
    gateway.stop()
    assert gateway.proc.returncode == 0
    for pid in now:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the gateway"


class Crashing(Workers):
    """Workers whose processes write their port file and exit at once (real processes)."""

    def _spawn(self, port: int) -> tuple[subprocess.Popen[bytes], Path]:
        self._n += 1
        port_file = self.run_dir / f"w{self._n}.port"
        # part of the test: the worker lives 0.2 s, then dies
        code = f"import time; open({str(port_file)!r}, 'w').write('1'); time.sleep(0.2)"
        return subprocess.Popen([sys.executable, "-c", code]), port_file


def keep_replacing(workers: Workers) -> None:
    for _ in range(200):  # bounded polling: each round waits for the replacements to exit
        time.sleep(0.3)
        workers.check()


def test_a_crash_loop_stops_the_supervisor(tmp_path: Path) -> None:
    workers = Crashing(2, [], tmp_path)
    workers.start(0)
    spawned = workers._n
    with pytest.raises(ChildFailed, match="6 gateway workers died"):
        keep_replacing(workers)
    workers.stop()
    assert workers._n == spawned + MAX_RESTARTS  # five replaced, the sixth death stops it


def test_a_port_taken_by_another_program_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: no worker can join it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = CoreProcess("gateway", tmp_path, {"VIVIFIED_GATEWAY_WORKERS": "2"})
        cmd = [sys.executable, "-m", "vivified", "gateway", "--gateway-port", str(port)]
        done = subprocess.run(cmd, env=gw.env, capture_output=True, text=True, timeout=120)
    # an operator mistake: one line, exit 2, before any worker starts (tests/test_cli_errors.py)
    assert done.returncode == 2
    assert done.stderr.startswith(f"vivified gateway: gateway port {port} on 127.0.0.1 is in use")
    assert len(done.stderr.splitlines()) == 1
    assert "Traceback" not in done.stderr
