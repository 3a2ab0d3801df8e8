"""One running instance per data dir: an advisory lock on `<data dir>/lock`.

- `vivified up` takes it exclusively, before it touches anything (migration, port files,
  the embedded NATS), and hands the locked descriptor to its gateway and egress children
  (`VIVIFIED_DATA_DIR_LOCK_FD`): they run under its lock and do not lock again. It writes its
  pid and, once they listen, its ports into the file for a second start to name.
- A standalone `vivified gateway` or `vivified egress` takes it shared: replicas (and a
  gateway beside an egress proxy) may share a data dir, `vivified up` may not join them, nor
  they a running `vivified up`. Gateway workers run under their supervisor's lock.

The lock is `flock(2)`: the kernel drops it when the last holder exits, however it exits, so
a crash leaves no stale lock (the file itself stays, with the last holder's details).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOCK_FILE = "lock"
FD_ENV = "VIVIFIED_DATA_DIR_LOCK_FD"


class DataDirBusy(Exception):
    """Another instance runs on the data dir; the message names it (exit status 1)."""


class DataDirLock:
    """A held lock on `<data dir>/lock`; `release()` (or process exit) gives it up."""

    def __init__(self, path: Path, fd: int, exclusive: bool, owned: bool) -> None:
        self.path = path
        self.fd = fd
        self.exclusive = exclusive
        self._owned = owned  # False: inherited from `vivified up`, not ours to write or close

    def describe(self, command: str, ports: Mapping[str, int] | None = None) -> None:
        """Record who holds the lock (exclusive holders only: shared ones would race)."""
        if not (self.exclusive and self._owned):
            return
        doc: dict[str, Any] = {"pid": os.getpid(), "command": command, "since": time.time()}
        if ports:
            doc["ports"] = dict(ports)
        data = (json.dumps(doc) + "\n").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def child_env(self) -> dict[str, str]:
        """Environment for a child that runs under this lock (pass `fd` in `pass_fds`)."""
        return {FD_ENV: str(self.fd)}

    def release(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor drops the flock
        self.fd = -1


def acquire(data_dir: Path, command: str, *, exclusive: bool) -> DataDirLock:
    """Lock `data_dir` (which must exist) for `command`; DataDirBusy naming the holder.

    A descriptor inherited from `vivified up` (FD_ENV) on this very lock file counts as held.
    OSError (e.g. permission denied) is the caller's to report.
    """
    path = data_dir / LOCK_FILE
    inherited = _inherited(path)
    if inherited is not None:
        return DataDirLock(path, inherited, exclusive=True, owned=False)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = describe_holder(path, fd)
        os.close(fd)
        raise DataDirBusy(
            f"data dir {data_dir.resolve()} is in use by {holder}: stop it first, or give this "
            f"one another --data-dir (VIVIFIED_DATA_DIR); nothing was changed"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    lock = DataDirLock(path, fd, exclusive, owned=True)
    lock.describe(command)
    return lock


def _inherited(path: Path) -> int | None:
    raw = os.environ.get(FD_ENV, "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    with contextlib.suppress(OSError):
        here, there = os.fstat(fd), os.stat(path)
        if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
            return fd
    return None


def describe_holder(path: Path, fd: int) -> str:
    """Who holds the lock: `vivified up` (pid, ports) from the file, else the lockers' pids."""
    doc: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(os.pread(fd, 4096, 0) or b"{}")
        doc = loaded if isinstance(loaded, dict) else {}
    pids = _lockers(path)
    pid = doc.get("pid")
    if isinstance(pid, int) and (pid in pids or (not pids and _alive(pid))):
        text = f"`vivified {doc.get('command', 'up')}` (pid {pid}"
        ports = doc.get("ports")
        if isinstance(ports, dict) and ports:
            text += ", " + ", ".join(f"{name} port {port}" for name, port in ports.items())
        return text + ")"
    if pids:
        names = sorted({_command(p) for p in pids})
        listed = ", ".join(str(p) for p in sorted(pids))
        return f"{' and '.join(names)} (pid {listed})"
    return "another vivified process"


def _lockers(path: Path) -> set[int]:
    """Pids holding a flock on `path` according to /proc/locks (Linux; empty elsewhere)."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return set()
    pids: set[int] = set()
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        with contextlib.suppress(ValueError):
            _maj, _min, ino = parts[5].split(":")
            if int(ino) == st.st_ino and int(parts[4]) > 0:
                pids.add(int(parts[4]))
    return pids


def _command(pid: int) -> str:
    """`vivified gateway` etc. for a vivified process, else `pid`'s program name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "a vivified process"
    words = [a.decode(errors="replace") for a in argv if a]
    for i, word in enumerate(words):
        if word in ("up", "gateway", "egress") and i > 0 and "vivified" in " ".join(words[:i]):
            return f"`vivified {word}`"
    return "a vivified process"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
