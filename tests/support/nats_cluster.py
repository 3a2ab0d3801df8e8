"""A private 3-node NATS cluster with JetStream, for fault tests: nodes stop and start by PID.

Each node has a fixed client port and cluster port (picked free by binding a socket first), so
a node restarted after a kill comes back where its peers and clients expect it, with its own
JetStream store dir kept (it catches up from the others). Only the processes started here are
ever signalled.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from vivified.config.nats_server import nats_server_binary


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (bound together, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    dir: Path
    routes: list[str]
    cluster_name: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(nats_server_binary()),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.client_port),
            "-n",
            self.name,
            "-js",
            "-sd",
            str(self.dir / "jetstream"),
            "--cluster_name",
            self.cluster_name,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            ",".join(self.routes),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to the peers."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class NatsCluster:
    """Three nats-server processes routed to each other, JetStream clustered."""

    def __init__(self, base: Path, size: int = 3) -> None:
        ports = free_ports(2 * size)
        cluster_ports = ports[size:]
        routes = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
        name = f"vivtest-{ports[0]}"
        self.nodes = [
            NatsNode(f"n{i}", ports[i], cluster_ports[i], base / f"n{i}", routes, name)
            for i in range(size)
        ]

    def start(self, timeout: float = 60) -> NatsCluster:
        """Start every node and wait until JetStream answers; on failure stop them all."""
        try:
            for node in self.nodes:
                node.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def wait_ready(self, timeout: float = 30) -> None:
        """Every running node listens and JetStream has a meta leader (answers account info)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [n for n in self.nodes if n.proc is not None]
            for n in running:
                if n.proc is not None and n.proc.poll() is not None:
                    raise RuntimeError(f"{n.name} exited:\n{n.log_path.read_text()[-2000:]}")
            if all(n.listening() for n in running) and asyncio.run(self._js_ready(running)):
                return
            time.sleep(0.2)
        raise RuntimeError("the NATS cluster did not become ready in time")

    @staticmethod
    async def _js_ready(nodes: list[NatsNode]) -> bool:
        try:
            for n in nodes:
                async with _connection(n.url, connect_timeout=1) as nc:
                    await nc.jetstream(timeout=2).account_info()
        except Exception:
            return False
        return True

    def stream_info(self, stream: str, via: str = "n0") -> dict[str, Any]:
        """`$JS.API.STREAM.INFO` as JSON (cluster leader and replicas included)."""
        return asyncio.run(self._request(via, f"$JS.API.STREAM.INFO.{stream}", b""))

    def stream_leader(self, stream: str, via: str = "n0") -> str:
        info = self.stream_info(stream, via)
        return str(info.get("cluster", {}).get("leader", ""))

    def move_leader(self, stream: str, to: str, via: str = "n0", timeout: float = 20) -> bool:
        """Ask the stream's leader to step down in favour of `to` (bounded; best effort)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.stream_leader(stream, via)
            if leader == to:
                return True
            if leader:
                body = json.dumps({"placement": {"preferred": to}}).encode()
                asyncio.run(self._request(via, f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body))
            time.sleep(0.5)
        return self.stream_leader(stream, via) == to

    def _node_url(self, name: str) -> str:
        return self.node(name).url

    async def _request(self, via: str, subject: str, body: bytes) -> dict[str, Any]:
        try:
            async with _connection(self._node_url(via), connect_timeout=2) as nc:
                msg = await nc.request(subject, body, timeout=5)
            answer: dict[str, Any] = json.loads(msg.data)
            return answer
        except Exception as exc:
            return {"error": type(exc).__name__}


@asynccontextmanager
async def _connection(url: str, connect_timeout: float) -> AsyncIterator[NATS]:
    """One attempt at `url`, closed whatever happens: nats-py, told not to reconnect, raises a
    failed handshake before it closes the socket it opened (an unclosed-transport warning
    later, in whatever test runs then)."""
    nc = NATS()
    try:
        await nc.connect(url, connect_timeout=connect_timeout, allow_reconnect=False)
        yield nc
    finally:
        await nc.close()
