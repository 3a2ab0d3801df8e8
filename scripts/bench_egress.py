"""Egress bench: the vivified egress proxy (auth + policy + audit) against mitmproxy, same flows.

Plain HTTP (absolute-form), HTTPS intercepted and HTTPS passthrough, against a loopback
upstream, with a small asyncio load generator (CONNECT included). The headline is the ratio to
"lean" mitmproxy: the same 7 built-in addons and options as the vivified proxy, no addon of
ours (issue 21: >= 0.9 plain and intercepted). Lean and vivified are measured alternately,
`--rounds` times per scenario in the same run; the ratio is the median of the rounds' ratios.
Each round also reads both processes' CPU time (Linux /proc), so the cost per request is shown
too: on a busy machine it moves less than req/s. Bare mitmdump (34 built-ins) is measured once
per scenario, for information; then squid with a dstdomain allowlist (plain HTTP and a CONNECT
tunnel) as the compiled anchor when squid is installed. The two lean rows go to
`bench_table.emit` when that module is there.
Usage: python scripts/bench_egress.py [--seconds 5] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from bench_egress_procs import (
    free_port,
    start_lean,
    start_mitmdump,
    start_squid,
    start_vivified,
    stop,
    wait_port,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # support.procfs
from support.procfs import cpu_seconds  # noqa: E402

NAMES = ["api.example.com", "pass.example.org", "localhost"]
BODY = b'{"ok":true}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    except asyncio.CancelledError:
        return  # the bench is over: the loop is closing its servers (no noisy callback)
    finally:
        writer.close()


Part = tuple[float, float | None, "Runs"]  # (ratio, CPU ratio, rounds) of a bench-only variant
TARGET = 0.9  # issue 21: the egress addons cost at most 10% against lean mitmproxy
HEADLINE = {"plain HTTP": "egress plain", "HTTPS intercepted": "egress intercepted"}


def _emit(
    results: dict[str, tuple[Runs, Runs, float, float | None]],
    parts: dict[str, Part],
) -> None:
    """The two headline rows for the bench table (when scripts/bench_table.py is there), each
    followed by the same proxy without its audit record."""
    try:
        from bench_table import NONE, emit
    except ImportError:
        return
    for label, name in HEADLINE.items():
        if label not in results:
            continue
        viv, lean, ratio, cpu_ratio = results[label]
        cpu = "" if viv.cpu is None else f", {viv.cpu:,.0f} us CPU/req"
        ref_cpu = "" if lean.cpu is None else f", {lean.cpu:,.0f} us CPU/req"
        emit(
            "egress",
            f"{name} vs lean mitmproxy",
            rate=f"{viv.rate:,.0f} req/s{cpu}",
            reference=f"lean mitmproxy {lean.rate:,.0f} req/s{ref_cpu}"
            + ("" if cpu_ratio is None else f" (CPU ratio {cpu_ratio:.2f})"),
            ratio=ratio,
            target=f">= {TARGET:g}",
            met=ratio >= TARGET,
        )
        if label in parts:
            part_ratio, part_cpu, part = parts[label]
            emit(
                "egress",
                f"{name} without the audit record (bench only) vs lean mitmproxy",
                rate=f"{part.rate:,.0f} req/s"
                + ("" if part.cpu is None else f", {part.cpu:,.0f} us CPU/req"),
                reference="lean mitmproxy"
                + ("" if part_cpu is None else f" (CPU ratio {part_cpu:.2f})"),
                ratio=part_ratio,
                target=NONE,
                met=None,
            )


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return status


async def open_client(
    kind: str,
    proxy: int | None,
    target: tuple[str, int],
    auth: str | None,
    ctx: ssl.SSLContext | None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A kept connection to `target` through `proxy` (None: straight to it), tunnelled and
    TLS-wrapped for `kind` "https", and the GET request the load repeats on it."""
    host, port = target
    if proxy is None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname=host if ctx else None
        )
        path = "/"
    elif kind == "http":
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
        path = f"http://{host}:{port}/"
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
        extra = f"Proxy-Authorization: {auth}\r\n" if auth else ""
        writer.write(
            f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"CONNECT refused: {head[:200]!r}")
        await writer.start_tls(ctx, server_hostname=host)  # type: ignore[arg-type]
        path = "/"
    extra = f"Proxy-Authorization: {auth}\r\n" if auth and kind == "http" and proxy else ""
    return reader, writer, f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()


async def _worker(
    kind: str,
    proxy: int | None,
    target: tuple[str, int],
    auth: str | None,
    ctx: ssl.SSLContext | None,
    deadline: float,
    counts: list[int],
) -> None:
    reader, writer, req = await open_client(kind, proxy, target, auth, ctx)
    while time.monotonic() < deadline:
        writer.write(req)
        status = await _read_response(reader)
        if status != 200:
            raise RuntimeError(f"status {status}")
        counts[0] += 1
    writer.close()


async def measure_counted(
    kind: str,
    proxy: int | None,
    target: tuple[str, int],
    auth: str | None,
    ctx: ssl.SSLContext | None,
    seconds: float,
    concurrency: int,
) -> tuple[float, int]:
    """(requests per second, requests answered)."""
    counts = [0]
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(
        *(_worker(kind, proxy, target, auth, ctx, deadline, counts) for _ in range(concurrency))
    )
    return counts[0] / (time.monotonic() - start), counts[0]


async def measure(
    kind: str,
    proxy: int | None,
    target: tuple[str, int],
    auth: str | None,
    ctx: ssl.SSLContext | None,
    seconds: float,
    concurrency: int,
) -> float:
    rate, _count = await measure_counted(kind, proxy, target, auth, ctx, seconds, concurrency)
    return rate


Load = tuple[str, int | None, tuple[str, int], str | None, ssl.SSLContext | None]
"""`measure`'s first arguments: kind, proxy port, target, credentials, TLS context."""


@dataclass
class Runs:
    """One proxy's rounds in one scenario: req/s and CPU microseconds per request."""

    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu(self) -> float | None:
        return statistics.median(self.cpu_us) if self.cpu_us else None


async def measure_proc(runs: Runs, pid: int, *args: Any) -> None:
    """One round of `measure_counted(*args)`, recording the rate and `pid`'s CPU per request."""
    before = cpu_seconds(pid)
    rate, count = await measure_counted(*args)
    after = cpu_seconds(pid)
    runs.rates.append(rate)
    if count:
        runs.cpu_us.append((after - before) / count * 1e6)


def paired(ours: Runs, reference: Runs) -> tuple[float, float | None]:
    """Median of the rounds' throughput ratios, and of the reference's CPU per request over
    ours (both > 1 when ours is the faster)."""
    rate = statistics.median(a / b for a, b in zip(ours.rates, reference.rates, strict=True))
    if len(ours.cpu_us) != len(reference.cpu_us) or not ours.cpu_us:
        return rate, None
    cpu = statistics.median(b / a for a, b in zip(ours.cpu_us, reference.cpu_us, strict=True))
    return rate, cpu


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-egress-"))
    ca = trustme.CA()
    cert = ca.issue_cert(*NAMES)
    ca_file = tmp / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    plain = await asyncio.start_server(_serve, "127.0.0.1", 0)
    secure = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=server_ctx)
    http_port = plain.sockets[0].getsockname()[1]
    https_port = secure.sockets[0].getsockname()[1]
    upstream_ctx = ssl.create_default_context(cafile=str(ca_file))
    s, c = args.seconds, args.concurrency
    procs: list[subprocess.Popen[bytes]] = []
    try:
        direct_http = await measure("http", None, ("localhost", http_port), None, None, s, c)
        direct_tls = await measure(
            "https", None, ("localhost", https_port), None, upstream_ctx, s, c
        )
        print(
            f"generator direct-to-upstream: http {direct_http:,.0f} req/s, "
            f"https {direct_tls:,.0f} req/s"
        )

        # bare mitmdump: no addon of ours; same options where they exist
        bare_port, bare_conf = free_port(), tmp / "bare-conf"
        procs.append(
            start_mitmdump(
                bare_port,
                bare_conf,
                f"ssl_verify_upstream_trusted_ca={ca_file}",
                "http2=false",
                ignore=r"^pass\.example\.org:",
            )
        )
        bare_ctx = ssl.create_default_context(cafile=str(bare_conf / "mitmproxy-ca-cert.pem"))

        viv_port, viv_proc, auth, viv_ctx = await start_vivified(
            tmp / "vivified", (http_port, https_port), ca_file
        )
        procs.append(viv_proc)
        # the same proxy recording nothing (bench only): what the mandated audit record costs
        part_port, part_proc, part_auth, part_ctx = await start_vivified(
            tmp / "vivified-without-audit", (http_port, https_port), ca_file, without="audit"
        )
        procs.append(part_proc)
        lean_port, lean_conf = free_port(), tmp / "lean-conf"

        procs.append(start_lean(lean_port, lean_conf, ca_file))
        lean_index = len(procs) - 1
        lean_ctx = ssl.create_default_context(cafile=str(lean_conf / "mitmproxy-ca-cert.pem"))

        scenarios = [
            ("plain HTTP", "http", http_port, None),
            ("HTTPS intercepted", "https", https_port, "intercept"),
            ("HTTPS passthrough", "https", https_port, "pass"),
        ]
        results: dict[str, tuple[Runs, Runs, float, float | None]] = {}
        parts: dict[str, Part] = {}  # without the audit record vs lean
        print(
            f"lean = mitmproxy with the vivified proxy's 7 built-in addons and options, no addon"
            f" of ours; {args.rounds} alternating rounds of {s:g} s each, medians"
        )
        for label, kind, port, tls in scenarios:
            bare_host = "pass.example.org" if tls == "pass" else "localhost"
            viv_host = "pass.example.org" if tls == "pass" else "api.example.com"
            bctx = upstream_ctx if tls == "pass" else bare_ctx
            vctx = upstream_ctx if tls == "pass" else viv_ctx
            if tls == "pass":
                # bare mitmdump resolves the name itself: point it at loopback via localhost
                bare_host = "localhost"
                procs[0].send_signal(signal.SIGINT)
                procs[0].wait(10)
                procs[0] = start_mitmdump(bare_port, bare_conf, ignore=r"^localhost:")
                stop(procs[lean_index])
                procs[lean_index] = start_lean(lean_port, lean_conf, ca_file, ".*")
            lctx = upstream_ctx if tls == "pass" else lean_ctx
            bare = await measure(
                kind, bare_port, (bare_host, port), None, bctx if kind == "https" else None, s, c
            )
            viv_load: Load = (
                kind,
                viv_port,
                (viv_host, port),
                auth,
                vctx if kind == "https" else None,
            )
            lean_load: Load = (
                kind,
                lean_port,
                ("localhost", port),
                None,
                lctx if kind == "https" else None,
            )
            viv, lean, part = Runs(), Runs(), Runs()
            order = [(viv, viv_proc, viv_load), (lean, procs[lean_index], lean_load)]
            if label in HEADLINE:  # the proxy without its audit record, beside them
                pctx = part_ctx if kind == "https" else None
                part_load: Load = (kind, part_port, (viv_host, port), part_auth, pctx)
                order.append((part, part_proc, part_load))
            for _, _, load in order:  # warm up (leaf certificates, caches)
                await measure(*load, min(s, 1.0), c)
            for r in range(args.rounds):  # alternate, and which goes first
                for runs, proc, load in order if r % 2 == 0 else order[::-1]:
                    await measure_proc(runs, proc.pid, *load, s, c)
            ratio, cpu_ratio = paired(viv, lean)
            results[label] = (viv, lean, ratio, cpu_ratio)
            if part.rates:
                parts[label] = (*paired(part, lean), part)
            cpu = (
                f";  CPU per request vivified {viv.cpu:,.0f} us, lean {lean.cpu:,.0f} us"
                f" (ratio {cpu_ratio:.2f})"
                if viv.cpu is not None and lean.cpu is not None and cpu_ratio is not None
                else ""
            )
            print(
                f"{label:20s} vivified {viv.rate:8,.0f} req/s   lean {lean.rate:8,.0f} req/s"
                f"   ratio to lean {ratio:.2f}{cpu};  bare mitmdump {bare:8,.0f} req/s"
                f" (vivified/bare {viv.rate / bare:.2f})"
            )
        print(f"vivified egress vs lean mitmproxy (target >= {TARGET:g} plain and intercepted):")
        for label, (_viv, _lean, ratio, cpu_ratio) in results.items():
            verdict = ("met" if ratio >= TARGET else "NOT met") if label in HEADLINE else "info"
            cpu = "" if cpu_ratio is None else f"   (CPU per request: {cpu_ratio:.2f})"
            print(f"  {label:20s} {ratio:.2f}x  {verdict}{cpu}")
        for label, (ratio, cpu_ratio, _) in parts.items():
            cpu = "" if cpu_ratio is None else f"   (CPU per request: {cpu_ratio:.2f})"
            print(f"  {label:20s} {ratio:.2f}x  without the audit record (bench only){cpu}")
        _emit(results, parts)
        squid = shutil.which("squid", path=os.pathsep.join([os.environ["PATH"], "/usr/sbin"]))
        if squid is None:
            print("squid not installed (Debian: apt-get install squid): no compiled anchor")
        else:
            squid_port = free_port()
            procs.append(start_squid(squid, tmp, squid_port))
            wait_port(squid_port, procs[-1])
            for label, kind, port, host in (
                ("plain HTTP", "http", http_port, "api.example.com"),
                ("HTTPS CONNECT tunnel", "https", https_port, "pass.example.org"),
            ):
                rate = await measure(
                    kind,
                    squid_port,
                    (host, port),
                    None,
                    upstream_ctx if kind == "https" else None,
                    s,
                    c,
                )
                print(
                    f"squid (dstdomain allowlist, compiled anchor): {label:20s} {rate:8,.0f} req/s"
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
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating lean/vivified rounds per scenario"
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
