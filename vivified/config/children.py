"""Child processes of the `vivified` commands: the port file (how a parent learns the port a
child bound; port 0 picks a free one), stop signals and stopping children."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
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


class StopSignals:
    """`stop` turns True on SIGTERM or SIGINT. Both are installed explicitly: a shell that
    starts us in the background hands SIGINT down ignored, and Python then installs no
    KeyboardInterrupt handler ("Press Ctrl-C" must still work)."""

    def __init__(self) -> None:
        self.stop = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, _sig: int, _frame: object) -> None:
        self.stop = True


def stop_all(procs: list[subprocess.Popen[Any]], grace: float) -> None:
    """SIGTERM to every child still running, then kill those still running after `grace`."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def interruptible() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt from here on, even in a background job
    (started with SIGINT ignored): a start can always be interrupted."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done (e.g. create the bootstrap admin AND save
    its token), then act on one that arrived as the previous handler would have."""
    arrived: list[signal.Signals] = []

    def hold(sig: int, _frame: FrameType | None) -> None:
        arrived.append(signal.Signals(sig))

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if arrived:
            handler = previous[arrived[0]]
            if callable(handler):
                handler(arrived[0], None)
            elif handler == signal.SIG_DFL:
                raise KeyboardInterrupt
