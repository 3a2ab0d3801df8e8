"""What /proc says about our own child processes: which ones there are, which TCP connections
each one holds (how the tests see where the kernel sent a connection, with nothing added to
the processes under test), and the CPU time they spent (how the benches count CPU per
request)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> set[int]:
    """The live (not zombie) child processes of `pid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue  # exited meanwhile
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets `pid` has open."""
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes  # exited meanwhile
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def established(*, local_port: int | None = None, remote_port: int | None = None) -> set[str]:
    """Inodes of the established TCP connections with that local and/or remote port."""
    return _tcp("01", local_port, remote_port)  # 01: ESTABLISHED


def listening(port: int) -> set[str]:
    """Inodes of the sockets listening on `port` (one per process sharing it with
    SO_REUSEPORT)."""
    return _tcp("0A", port, None)  # 0A: LISTEN


def _tcp(state: str, local_port: int | None, remote_port: int | None) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] != state:
                continue
            if local_port is not None and local != local_port:
                continue
            if remote_port is not None and remote != remote_port:
                continue
            inodes.add(fields[9])
    return inodes


def held(pids: Iterable[int], connections: set[str]) -> dict[int, int]:
    """How many of `connections` (inodes) each process holds."""
    return {pid: len(socket_inodes(pid) & connections) for pid in pids}


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after `pid (comm)` (None once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far, all its threads (0.0 once it is gone)."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of `pid` and of every live descendant (a supervisor and its workers)."""
    parents: dict[int, int] = {}
    spent: dict[int, float] = {}
    for entry in os.listdir("/proc"):  # one read of each process's stat: parent and CPU
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents[int(entry)] = int(fields[1])
            spent[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        born = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(born)
        frontier += born
    return sum(spent.get(p, 0.0) for p in tree)


def involuntary_switches(pid: int) -> int:
    """Times the kernel took the CPU from `pid` (its main thread) so far; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0
