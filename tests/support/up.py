"""`vivified up` as a child process for fault tests and the soak: its ports and its children.

Started on a temp data dir with ports 0; the banner names the gateway and egress ports. Its
children (gateway, egress, nats-server) are found through /proc, so a test can kill one of
them by PID; `stop()` ends `up` itself with SIGINT, as Ctrl-C would.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from support.procs import ADMIN_TOKEN, clean_env


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(x) for x in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def read_banner(proc: subprocess.Popen[str]) -> str:
    """The banner `up` prints on its stdout (a text pipe), up to its last line (60 s at most)."""
    assert proc.stdout is not None
    banner = ""
    deadline = time.monotonic() + 60
    while "Press Ctrl-C" not in banner:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, banner
        banner += line
        assert time.monotonic() < deadline, banner
    return banner


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class UpProcess:
    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = clean_env(
            {
                "VIVIFIED_DATA_DIR": str(data_dir),
                "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN,
                "VIVIFIED_LOG_LEVEL": "warning",
                **(env or {}),
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.banner = ""
        self.gateway_url = ""
        self.egress_port = 0
        self.log_path = data_dir / "up.log"

    def start(self, timeout: float = 90) -> UpProcess:
        """Start `up`, its output to `up.log` (a file, not a pipe: a full pipe would block
        every child writing to it), and wait for the banner's last line."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while "Press Ctrl-C" not in self.banner:
            self.banner = self.log_path.read_text(errors="replace")
            if self.proc.poll() is not None:
                raise RuntimeError(f"vivified up exited:\n{self.banner}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"vivified up did not start in {timeout} s:\n{self.banner}")
            time.sleep(0.05)
        gateway = re.search(r"gateway\s+(http://\S+)", self.banner)
        egress = re.search(r"egress proxy\s+http://[^\s]+:(\d+)", self.banner)
        assert gateway is not None, self.banner
        assert egress is not None, self.banner
        self.gateway_url, self.egress_port = gateway.group(1), int(egress.group(1))
        return self

    def child(self, kind: str) -> int | None:
        """The PID of the running child `gateway`, `egress` or `nats-server`."""
        assert self.proc is not None
        for pid in children_of(self.proc.pid):
            args = cmdline(pid)
            if not alive(pid):
                continue
            if kind == "nats-server" and args and args[0].endswith("nats-server"):
                return pid
            if args[1:4] == ["-m", "vivified", kind]:
                return pid
        return None

    def pids(self) -> dict[str, int]:
        """`up` and each running child, by name."""
        assert self.proc is not None
        out = {"up": self.proc.pid}
        for kind in ("gateway", "egress", "nats-server"):
            pid = self.child(kind)
            if pid is not None:
                out[kind] = pid
        return out

    def stop(self, timeout: float = 45) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode
