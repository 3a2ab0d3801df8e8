"""Egress workers bench: `VIVIFIED_EGRESS_WORKERS=1` against `=N`, and passthrough against
mitmdump with `ignore_hosts`, every pair interleaved in one run (only same-run ratios mean
anything on a shared machine): each ratio is the median of the rounds' ratios, each round
measuring the pair back to back (in turn first).

- CPU per request: user+sys CPU of every egress process (the supervisor and its workers, read
  from /proc before and after each window) divided by the requests answered in it, for plain
  HTTP and intercepted HTTPS on kept connections, both saturated (as fast as the proxy
  answers) and paced (`--rate` req/s offered to both: the same work, neither short of CPU).
  Target: N workers within 10 % of one. Involuntary context switches per request are shown
  beside it: on a machine with fewer free cores than workers plus the load generator, the
  saturated figure also measures that contention.
- Connection spread: which worker holds each of the load's connections (sampled from /proc in
  the middle of each N-worker window), plus a burst of fresh connections counted the same way,
  and each worker's share of the CPU.
- Passthrough (a TLS tunnel the proxy does not open): our egress (1 and N workers) against
  mitmdump with `--ignore-hosts`, req/s on kept tunnels. Target: >= 0.95x mitmdump.

The load generator, upstreams and registry setup are those of scripts/bench_egress.py.
Usage: python scripts/bench_egress_workers.py [--seconds 2] [--rounds 4] [--concurrency 16]
       [--rate 300] [--workers 2] [--metrics]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # support.procfs
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_egress import (  # the scripts directory (also first when run as a script)
    NAMES,
    _read_response,
    _serve,
    _worker,
)
from bench_egress_procs import free_port, setup_vivified, stop, wait_port
from support.procfs import children, cpu_seconds, established, held, involuntary_switches

try:
    from bench_table import emit
except ImportError:  # the shared results table is not there: print only
    emit = None  # type: ignore[assignment]

SUITE = "egress_workers"
BURST = 64  # fresh connections of the spread check


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
    host, port = target
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    extra = f"Proxy-Authorization: {auth}\r\n" if auth else ""
    if kind == "http":
        path = f"http://{host}:{port}/"
    else:
        writer.write(
            f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"CONNECT refused: {head[:200]!r}")
        await writer.start_tls(ctx, server_hostname=host)  # type: ignore[arg-type]
        path, extra = "/", ""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
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


async def burst(proxy: Proxy, host: str, port: int) -> dict[int, int]:
    """BURST fresh connections, one request each, all held open while counted."""
    conns = []
    try:
        for _ in range(BURST):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            extra = f"Proxy-Authorization: {proxy.auth}\r\n" if proxy.auth else ""
            writer.write(
                f"GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
            )
            await reader.readuntil(b"\r\n\r\n")
            conns.append(writer)
        return proxy.hold_count()
    finally:
        for writer in conns:
            writer.close()


def start_egress(
    data: Path, workers: int, ca_file: Path, metrics: bool, label: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")}
    env.update(
        {
            "VIVIFIED_DATA_DIR": str(data),
            "VIVIFIED_EGRESS_UPSTREAM_CA": str(ca_file),
            "VIVIFIED_LOG_LEVEL": "warning",
            "VIVIFIED_EGRESS_WORKERS": str(workers),
        }
    )
    if metrics:
        env["VIVIFIED_EGRESS_METRICS_PORT"] = str(free_port())
    port_file = data / "egress.port"
    cmd = [sys.executable, "-m", "vivified", "egress", "--egress-port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--port-file", str(port_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{label} did not start")
        time.sleep(0.05)
    return proc


def start_mitmdump(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Bare mitmdump passing `localhost:*` through untouched (`--ignore-hosts`)."""
    port = free_port()
    mitmdump = shutil.which("mitmdump", path=str(Path(sys.executable).parent)) or "mitmdump"
    proc = subprocess.Popen(
        [
            mitmdump,
            "-q",
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(port),
            "--set",
            f"confdir={tmp / 'mitmdump-conf'}",
            "--set",
            "connection_strategy=eager",
            "--ignore-hosts",
            r"^localhost:",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc, port


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def row(scenario: str, **kw: Any) -> None:
    if emit is not None:
        emit(SUITE, scenario, **kw)


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


async def main_async(args: argparse.Namespace) -> int:
    from vivified.config.egress_ca import ensure_ca

    tmp = Path(tempfile.mkdtemp(prefix="bench-egress-workers-"))
    ca = trustme.CA()
    ca.issue_cert(*NAMES).configure_cert(
        server_ctx := ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    )
    ca_file = tmp / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    plain = await asyncio.start_server(_serve, "127.0.0.1", 0)
    secure = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=server_ctx)
    http_port = plain.sockets[0].getsockname()[1]
    https_port = secure.sockets[0].getsockname()[1]
    upstream_ctx = ssl.create_default_context(cafile=str(ca_file))
    n = args.workers
    procs: list[subprocess.Popen[bytes]] = []
    try:
        proxies = []
        for label, count in (("1 worker", 1), (f"{n} workers", n)):
            data = tmp / label.replace(" ", "-")
            data.mkdir()
            auth = await setup_vivified(data, (http_port, https_port))
            proc = start_egress(data, count, ca_file, args.metrics, label)
            procs.append(proc)
            port = int((data / "egress.port").read_text())
            ctx = ssl.create_default_context(cafile=str(ensure_ca(data)))
            proxies.append(Proxy(label, proc, port, auth, ctx))
        one, many = proxies
        print(f"{many.label}: pids {many.workers} under supervisor {many.proc.pid}")

        # -- CPU per request, 1 vs N workers ----------------------------------------------
        for (scenario, kind, target), pace in itertools.product(
            (
                ("plain HTTP", "http", ("api.example.com", http_port)),
                ("HTTPS intercepted", "https", ("api.example.com", https_port)),
            ),
            (None, args.rate),
        ):

            def run(
                p: Proxy, kind: str = kind, target: tuple[str, int] = target, pace: Any = pace
            ) -> Any:
                return window(p, kind, target, p.ctx if kind == "https" else None, args, pace)

            a, b = await interleaved([(one, run), (many, run)], args.rounds)
            rate1, rate_n = median([x.rate for x in a]), median([x.rate for x in b])
            cpu1, cpu_n = median([x.cpu for x in a]), median([x.cpu for x in b])
            sw1, sw_n = median([x.switches for x in a]), median([x.switches for x in b])
            # the ratio of each round's adjacent pair of windows, then their median
            rounds = [y.cpu / x.cpu for x, y in zip(a, b, strict=True)]
            ratio = median(rounds)
            how = "saturated" if pace is None else f"paced {pace:g} req/s"
            scenario = f"{scenario}, {how}"
            print(
                f"{scenario:38s} CPU/request: 1 worker {cpu1 * 1e6:5.0f} us ({rate1:6,.0f} req/s,"
                f" {sw1:.2f} preemptions/req)   {n} workers {cpu_n * 1e6:5.0f} us"
                f" ({rate_n:6,.0f} req/s, {sw_n:.2f} preemptions/req)   ratio {ratio:.3f}"
                f" (target <= 1.10; rounds {[round(r, 3) for r in rounds]})"
            )
            row(
                f"CPU per request, {scenario}, {n} workers vs 1",
                rate=f"{cpu_n * 1e6:.0f} us CPU/req ({rate_n:,.0f} req/s)",
                reference=f"1 worker {cpu1 * 1e6:.0f} us CPU/req ({rate1:,.0f} req/s)",
                ratio=ratio,
                target="<= 1.10",
                met=ratio <= 1.10,
            )

        # -- connection spread --------------------------------------------------------------
        fresh = await burst(many, "api.example.com", http_port)
        sampled = {pid: sum(s.get(pid, 0) for s in many.spread) for pid in many.workers}
        shares = {pid: many.worker_cpu.get(pid, 0.0) for pid in many.workers}
        total_cpu = sum(shares.values()) or 1.0
        print(
            f"spread over {n} workers: {BURST} fresh connections {sorted(fresh.values())};"
            f" load connections (summed over {len(many.spread)} samples of {args.concurrency})"
            f" {sorted(sampled.values())}; CPU share"
            f" {sorted(round(c / total_cpu, 2) for c in shares.values())}"
        )
        even = BURST / n
        row(
            f"connection spread, {n} workers",
            rate=f"{BURST} fresh connections: {'/'.join(str(v) for v in fresh.values())}",
            reference=f"even {even:g} each",
            ratio=min(fresh.values()) / even,
            target="reported (kernel hash)",
            met=None,
        )

        # -- passthrough against mitmdump --ignore-hosts --------------------------------------
        bare_proc, bare_port = start_mitmdump(tmp)
        procs.append(bare_proc)
        bare = Proxy("mitmdump --ignore-hosts", bare_proc, bare_port)

        def through(p: Proxy) -> Any:
            host = "localhost" if p is bare else "pass.example.org"
            return window(p, "https", (host, https_port), upstream_ctx, args)

        results = await interleaved([(bare, through), (one, through), (many, through)], args.rounds)
        ref = median([x.rate for x in results[0]])
        ref_cpu = median([x.cpu for x in results[0]])
        for proxy, windows in zip((one, many), results[1:], strict=True):
            rate = median([x.rate for x in windows])
            rounds = [y.rate / x.rate for x, y in zip(results[0], windows, strict=True)]
            ratio = median(rounds)
            # the proxies' own CPU per request: steadier than req/s when the generator or the
            # machine's other work sets the pace
            cpu = median([y.cpu / x.cpu for x, y in zip(results[0], windows, strict=True)])
            print(
                f"passthrough        mitmdump --ignore-hosts {ref:8,.0f} req/s   "
                f"vivified {proxy.label} {rate:8,.0f} req/s   ratio {ratio:.2f} (target >= 0.95;"
                f" rounds {[round(r, 2) for r in rounds]});   CPU/request"
                f" {cpu:.2f}x mitmdump's ({ref_cpu * 1e6:.0f} us)"
            )
            row(
                f"passthrough, {proxy.label} vs mitmdump ignore_hosts",
                rate=f"{rate:,.0f} req/s (CPU/req {cpu:.2f}x mitmdump's)",
                reference=f"mitmdump --ignore-hosts {ref:,.0f} req/s",
                ratio=ratio,
                target=">= 0.95",
                met=ratio >= 0.95,
            )
    finally:
        for p in procs:
            stop(p)
        plain.close()
        secure.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="one load window")
    parser.add_argument("--rounds", type=int, default=4, help="windows per member, interleaved")
    parser.add_argument("--concurrency", type=int, default=16, help="kept connections")
    parser.add_argument(
        "--rate", type=float, default=300, help="offered req/s of the paced CPU windows"
    )
    parser.add_argument("--workers", type=int, default=2, help="N (compared with 1)")
    parser.add_argument("--metrics", action="store_true", help="egress metrics on in both")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise SystemExit(main())
