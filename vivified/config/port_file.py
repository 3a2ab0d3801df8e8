"""The port file: how a parent learns the port a child bound (port 0 picks a free one)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any


class ChildFailed(RuntimeError):
    """A child process exited or stalled before it was listening."""


def write_port(port_file: str, port: int) -> None:
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, port_file)  # atomic: a reader never sees a half-written file


def wait_port(path: Path, proc: subprocess.Popen[Any], what: str, timeout: float = 120.0) -> int:
    """The port `proc` wrote to `path` once listening; ChildFailed if it exits or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChildFailed(f"{what} exited with {proc.returncode}")
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise ChildFailed(f"{what} wrote no port to {path} within {timeout:.0f} s")
