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
  saturated figure also measures that contention. Paced, each of N workers carries 1/N of the
  rate, and a mitmproxy process costs more per request the fewer requests it carries, so two
  more comparisons share the paced rounds: N workers at N x the rate against one at the rate
  (the same load per process), and lean mitmproxy (bench_egress's reference, no addon of
  ours) at 1/N of the rate against at the rate (what that alone does to one process).
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
import functools
import itertools
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_egress import NAMES, _serve  # the scripts directory (also first when run as a script)
from bench_egress_procs import (
    free_port,
    setup_vivified,
    start_lean,
    start_mitmdump,
    stop,
)
from bench_egress_windows import Proxy, Window, interleaved, median, window

try:
    from bench_table import emit
except ImportError:  # the shared results table is not there: print only
    emit = None  # type: ignore[assignment]

SUITE = "egress_workers"
BURST = 64  # fresh connections of the spread check


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


def row(scenario: str, **kw: Any) -> None:
    if emit is not None:
        emit(SUITE, scenario, **kw)


def compare(
    scenario: str,
    what: str,
    ref: list[Window],
    test: list[Window],
    ref_label: str,
    target: float | None = 1.10,
) -> None:
    """Print and emit one CPU-per-request comparison: the median of each round's ratio."""
    rate_r, rate_t = median([x.rate for x in ref]), median([x.rate for x in test])
    cpu_r, cpu_t = median([x.cpu for x in ref]), median([x.cpu for x in test])
    sw_r, sw_t = median([x.switches for x in ref]), median([x.switches for x in test])
    rounds = [y.cpu / x.cpu for x, y in zip(ref, test, strict=True)]
    ratio = median(rounds)
    print(
        f"{scenario}, {what}: CPU/request {cpu_t * 1e6:5.0f} us ({rate_t:6,.0f} req/s,"
        f" {sw_t:.2f} preemptions/req) vs {ref_label} {cpu_r * 1e6:5.0f} us ({rate_r:6,.0f}"
        f" req/s, {sw_r:.2f} preemptions/req)   ratio {ratio:.3f}"
        f" (target {f'<= {target:.2f}' if target else 'none: a reference'};"
        f" rounds {[round(r, 3) for r in rounds]})"
    )
    row(
        f"CPU per request, {scenario}, {what}",
        rate=f"{cpu_t * 1e6:.0f} us CPU/req ({rate_t:,.0f} req/s)",
        reference=f"{ref_label} {cpu_r * 1e6:.0f} us CPU/req ({rate_r:,.0f} req/s)",
        ratio=ratio,
        target=f"<= {target:.2f}" if target else "reference",
        met=None if target is None else ratio <= target,
    )


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

        # lean mitmproxy (bench_egress's reference) at the paced rate and at one worker's share
        # of it: what a process's own load does to its CPU per request, whatever its addons
        lean_port, lean_conf = free_port(), tmp / "lean-conf"
        procs.append(start_lean(lean_port, lean_conf, ca_file))
        lean_ctx = ssl.create_default_context(cafile=str(lean_conf / "mitmproxy-ca-cert.pem"))
        lean = Proxy("lean mitmproxy", procs[-1], lean_port, None, lean_ctx)

        # -- CPU per request, 1 vs N workers ----------------------------------------------
        for (scenario, kind, port), pace in itertools.product(
            (("plain HTTP", "http", http_port), ("HTTPS intercepted", "https", https_port)),
            (None, args.rate),
        ):

            def run(
                p: Proxy, kind: str = kind, port: int = port, pace: Any = pace, scale: float = 1
            ) -> Any:
                host = "localhost" if p is lean else "api.example.com"  # lean resolves names
                rate = None if pace is None else pace * scale
                return window(p, kind, (host, port), p.ctx if kind == "https" else None, args, rate)

            members = [(one, run), (many, run)]
            if pace is not None:  # N workers at N x the rate; lean at the rate and at 1/N of it
                members += [
                    (many, functools.partial(run, scale=n)),
                    (lean, functools.partial(run, scale=1 / n)),
                    (lean, run),
                ]
            a, b, *paced = await interleaved(members, args.rounds)
            how = "saturated" if pace is None else f"paced {pace:g} req/s"
            compare(f"{scenario}, {how}", f"{n} workers vs 1", a, b, "1 worker")
            if pace is None:
                continue
            each, lean_share, lean_whole = paced
            compare(
                f"{scenario}, paced {pace:g} req/s per process",
                f"{n} workers at {pace * n:g} req/s vs 1 at {pace:g}",
                a,
                each,
                "1 worker",
            )
            compare(
                f"{scenario}, lean mitmproxy at {pace / n:g} req/s vs at {pace:g}",
                "what 1/N of the load does to one process's CPU per request",
                lean_whole,
                lean_share,
                f"lean at {pace:g} req/s",
                target=None,
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
        bare_port = free_port()
        bare_proc = start_mitmdump(bare_port, tmp / "mitmdump-conf", ignore=r"^localhost:")
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
