"""Load windows of the egress benches: a proxy under test (`Proxy`), one window of load through
it, saturated or paced (`window`: rate, CPU per request of all its processes, preemptions), and
members measured in interleaved rounds (`interleaved`), whose medians the suites compare."""

from __future__ import annotations

import asyncio
import random
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # support.procfs
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_egress import _read_response, _worker, open_client  # the scripts directory
from support.procfs import children, cpu_seconds, established, held, involuntary_switches


@dataclass
class Proxy:
    """One proxy under test: its port, its processes, how a client talks to it."""

    label: str
    proc: subprocess.Popen[bytes]
    port: int
    auth: str | None = None
    ctx: ssl.SSLContext | None = None  # trusts its interception CA
    spread: list[dict[int, int]] = field(default_factory=list)
    worker_cpu: dict[int, float] = field(default_factory=dict)

    @property
    def workers(self) -> list[int]:
        return sorted(children(self.proc.pid)) or [self.proc.pid]

    def pids(self) -> list[int]:
        return [self.proc.pid, *sorted(children(self.proc.pid))]

    def hold_count(self) -> dict[int, int]:
        return held(self.workers, established(local_port=self.port))


async def _paced_worker(
    kind: str,
    proxy: int,
    target: tuple[str, int],
    auth: str | None,
    ctx: ssl.SSLContext | None,
    deadline: float,
    counts: list[int],
    interval: float,
) -> None:
    """bench_egress's `_worker` through a proxy, one request every `interval` seconds."""
    reader, writer, req = await open_client(kind, proxy, target, auth, ctx)
    next_at = time.monotonic() + random.random() * interval  # spread the connections' turns
    while next_at < deadline:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        writer.write(req)
        if await _read_response(reader) != 200:
            raise RuntimeError("not 200")
        counts[0] += 1
        next_at += interval
    writer.close()


@dataclass
class Window:
    rate: float  # requests per second
    cpu: float  # CPU seconds per request, all the proxy's processes
    switches: float  # involuntary context switches per request, all the proxy's processes


async def window(
    proxy: Proxy,
    kind: str,
    target: tuple[str, int],
    ctx: ssl.SSLContext | None,
    args: Any,
    pace: float | None = None,
) -> Window:
    """One load window through `proxy`: as fast as it answers, or `pace` req/s in all."""
    pids = proxy.pids()
    before = {pid: (cpu_seconds(pid), involuntary_switches(pid)) for pid in pids}
    counts = [0]
    start = time.monotonic()
    deadline = start + args.seconds

    async def sample() -> None:  # where the kernel put the load's connections
        await asyncio.sleep(args.seconds / 2)
        if len(proxy.workers) > 1:
            proxy.spread.append(proxy.hold_count())

    if pace is None:
        load = [
            _worker(kind, proxy.port, target, proxy.auth, ctx, deadline, counts)
            for _ in range(args.concurrency)
        ]
    else:
        interval = args.concurrency / pace
        load = [
            _paced_worker(kind, proxy.port, target, proxy.auth, ctx, deadline, counts, interval)
            for _ in range(args.concurrency)
        ]
    await asyncio.gather(sample(), *load)
    elapsed = time.monotonic() - start
    used = {pid: cpu_seconds(pid) - before[pid][0] for pid in pids}
    switched = sum(involuntary_switches(pid) - before[pid][1] for pid in pids)
    for pid, cpu in used.items():
        proxy.worker_cpu[pid] = proxy.worker_cpu.get(pid, 0.0) + cpu
    n = max(counts[0], 1)
    return Window(counts[0] / elapsed, sum(used.values()) / n, switched / n)


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


async def interleaved(
    pair: list[tuple[Proxy, Callable[[Proxy], Any]]], rounds: int
) -> list[list[Window]]:
    """Each round runs every member once, the order reversed every other round."""
    out: list[list[Window]] = [[] for _ in pair]
    for r in range(rounds):
        order = list(range(len(pair))) if r % 2 == 0 else list(reversed(range(len(pair))))
        for i in order:
            proxy, run = pair[i]
            out[i].append(await run(proxy))
    return out
