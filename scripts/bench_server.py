"""Bench: the gateway's ASGI server, uvicorn (as `vivified gateway` serves it) against granian.

One upstream (CPU 1, beside wrk) and, on CPU 0 (every thread of every process), the same
gateway app twice or more: under uvicorn exactly as `vivified gateway` runs it (uvloop,
httptools with core's header timeout and connection cap), and under granian (`--interface
asgi`, one worker, one runtime thread) with each event loop in GRANIAN_LOOPS. Every gateway
is the real one, everything on (JWT, policy, signed assertion, audit, metrics), on a registry
of its own set up the same way (`bench_operator.start_gateway`). The naive streaming proxy of
`bench_operator` runs too: the paced latency is measured at its rate, as there.

Throughput: wrk at 32 connections, interleaved rounds (the order reversed every other round),
medians with the range. CPU per call: the server's process tree's CPU time (/proc, user +
system, every process and thread) over the calls wrk completed in the same rounds, which a
loaded machine inflates far less than it lowers the rate. Then the paced p99 (32 connections
paced to the naive proxy's rate) and one connection, again interleaved, medians.

    BENCH_ROUNDS=6 BENCH_ROUND_SECONDS=5 GRANIAN_LOOPS=uvloop,asyncio .venv/bin/python \
        scripts/bench_server.py          (or: scripts/bench server)

granian is not a dependency of core (the bench found no reason to serve the gateway with it:
docs/performance.md, "ASGI server"): install it into the venv first.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_operator
from bench_operator import (
    CONNECTIONS,
    DURATION,
    NAIVE_STREAMING,
    PACED,
    ROUND_SECONDS,
    ROUNDS,
    median_run,
    start_gateway,
    start_naive,
    start_upstream,
    wrk,
)
from bench_serve import machine_speed, pin
from bench_table import NONE, emit, emit_ratio
from support.procfs import tree_cpu_seconds
from support.procs import CoreProcess

# granian variants: its event loop, optionally `:rust` for its Rust task implementation
GRANIAN_LOOPS = [x for x in os.environ.get("GRANIAN_LOOPS", "uvloop,asyncio").split(",") if x]
PACED_ROUNDS = int(os.environ.get("BENCH_PACED_ROUNDS", "3"))
# The gateway app as granian imports it (`--factory`): what `serve_gateway` builds around
# `create_app`, minus uvicorn. The app's own lifespan starts the core (granian's `asgi`
# interface runs it); the gc tuning serve_gateway does once listening is done here once the
# lifespan has started, so both servers run the same app with the same collector.
GRANIAN_APP = """
import gc
from vivified.config.logs import configure_logging
from vivified.config.settings import load_settings
from vivified.gateway.app import create_app
from vivified.gateway.serve import OneDate

def app():
    settings = load_settings()
    configure_logging(settings.log_level, fmt=settings.log_format, process="gateway")
    gateway = create_app(settings)
    gateway.state.oidc = None  # the bench configures no OIDC (start_oidc would return None)
    inner = OneDate(gateway)

    async def served(scope, receive, send):
        if scope["type"] != "lifespan":
            return await inner(scope, receive, send)

        async def send_then_freeze(message):
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                gc.freeze()
                gc.set_threshold(50_000, 20, 20)

        return await inner(scope, receive, send_then_freeze)

    return served
"""


def free_port() -> int:
    """A free loopback port (closed again before granian binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GranianGateway(CoreProcess):
    """The gateway app under granian (one worker), pinned to CPU 0 from its start, so the
    worker process it spawns and every thread inherit the pin."""

    loop = "uvloop"
    task_impl = "asyncio"

    def start(self, timeout: float = 60) -> GranianGateway:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "granian_gateway.py").write_text(GRANIAN_APP)
        self.port = free_port()
        cmd = [
            *pin(0),
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--loop",
            self.loop,
            "--task-impl",
            self.task_impl,
            "--log-level",
            "warning",
            "--working-dir",
            str(self.data_dir),
            "granian_gateway:app",
        ]
        env = {**self.env, "PYTHONPATH": str(self.data_dir)}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"granian exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", trust_env=False, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"granian did not start within {timeout}s:\n{self.log()}")


@contextmanager
def granian_processes(variant: str) -> Iterator[None]:
    """`bench_operator.start_gateway` builds a CoreProcess: make it build a GranianGateway
    (`variant`: loop[:task implementation]) instead, so the registry is set up by the very
    same code."""
    loop, _, task_impl = variant.partition(":")
    attrs = {"loop": loop, "task_impl": task_impl or "asyncio"}
    cls = type("VariantGateway", (GranianGateway,), attrs)
    saved = getattr(bench_operator, "CoreProcess")  # noqa: B009
    setattr(bench_operator, "CoreProcess", cls)  # noqa: B010
    try:
        yield
    finally:
        setattr(bench_operator, "CoreProcess", saved)  # noqa: B010


def measured(pid: int | None, url: str, headers: dict[str, str], **kw: object) -> dict[str, float]:
    """One wrk run, with the CPU time the server at `pid` spent per completed call (us)."""
    before = tree_cpu_seconds(pid) if pid else 0.0
    result = wrk(url, headers, **kw)  # type: ignore[arg-type]
    if pid:
        spent = tree_cpu_seconds(pid) - before
        result["cpu_us"] = spent * 1e6 / max(result["requests"], 1.0)
    return result


def interleaved(
    targets: dict[str, tuple[int | None, str, dict[str, str]]], rounds: int, **kw: object
) -> dict[str, list[dict[str, float]]]:
    """`rounds` rounds over every target, the order reversed every other round."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for n in range(rounds):
        order = list(targets) if n % 2 == 0 else list(reversed(targets))
        for name in order:
            pid, url, headers = targets[name]
            runs[name].append(measured(pid, url, headers, **kw))
    return runs


def main() -> None:
    if importlib.util.find_spec("granian") is None:
        sys.exit(
            "granian is not installed (not a dependency of core): .venv/bin/pip install granian"
        )
    print(machine_speed(), flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        upstream, up_url = start_upstream(tmp)
        gateways: dict[str, tuple[CoreProcess, str]] = {}
        naive = None
        try:
            gateways["uvicorn"] = start_gateway(tmp, "uvicorn", up_url)
            for variant in GRANIAN_LOOPS:
                with granian_processes(variant):
                    name = variant.replace(":", "-")
                    gateways[f"granian {variant}"] = start_gateway(tmp, f"granian-{name}", up_url)
            naive, naive_url = start_naive(tmp / "naive", up_url, NAIVE_STREAMING)
            targets: dict[str, tuple[int | None, str, dict[str, str]]] = {
                "naive streaming proxy": (naive.pid, f"{naive_url}/x", {})
            }
            for name, (gw, token) in gateways.items():
                assert gw.proc is not None
                auth = {"Authorization": f"Bearer {token}"}
                targets[name] = (gw.proc.pid, f"{gw.url}/target/items/42", auth)
            saturated = interleaved(targets, ROUNDS, seconds=ROUND_SECONDS)
            best = {name: median_run(runs) for name, runs in saturated.items()}
            (tmp / "paced.lua").write_text(PACED)
            delay = CONNECTIONS * 1000 / best["naive streaming proxy"]["rps"]
            servers = {k: v for k, v in targets.items() if k != "naive streaming proxy"}
            paced = interleaved(
                servers, PACED_ROUNDS, paced=tmp / "paced.lua", delay_ms=delay, seconds=DURATION
            )
            light = interleaved(servers, PACED_ROUNDS, connections=1, seconds=DURATION)
            direct = wrk(f"{up_url}/api/items/42", {}, seconds=ROUND_SECONDS)
        finally:
            if naive is not None:
                naive.terminate()
                naive.wait(10)
            for gw, _ in gateways.values():
                gw.stop()
            upstream.terminate()
            upstream.wait(10)
    report(saturated, best, paced, light, direct)


def report(
    saturated: dict[str, list[dict[str, float]]],
    best: dict[str, dict[str, float]],
    paced: dict[str, list[dict[str, float]]],
    light: dict[str, list[dict[str, float]]],
    direct: dict[str, float],
) -> None:
    base = best["uvicorn"]
    base_cpu = statistics.median(r["cpu_us"] for r in saturated["uvicorn"])
    print(
        f"operator lane through the gateway, {CONNECTIONS} connections (wrk -t1), every "
        f"server pinned to CPU 0; median of {ROUNDS} interleaved rounds of {ROUND_SECONDS}s "
        f"[range]; CPU per call from /proc (median [range]); direct upstream {direct['rps']:.0f}"
    )
    for name, runs in saturated.items():
        r = best[name]
        cpus = sorted(x["cpu_us"] for x in runs)
        cpu = statistics.median(cpus)
        errors = sum(x["errors"] for x in runs)
        # the share of CPU 0 it was given: under contention a server with more runnable
        # threads gets more of the core, which moves req/s but not the CPU per call
        share = statistics.median(x["rps"] * x["cpu_us"] / 1e6 for x in runs)
        print(
            f"  {name:22s}: {r['rps']:7.0f} req/s [{r['low']:.0f}-{r['high']:.0f}] "
            f"x{r['rps'] / base['rps']:.2f}  saturated p50 {r['p50']:.2f} ms "
            f"p99 {r['p99']:.2f} ms  (non-2xx: {errors:.0f})"
        )
        print(
            f"  {'':22s}  CPU/call {cpu:6.1f} us [{cpus[0]:.0f}-{cpus[-1]:.0f}] "
            f"x{cpu / base_cpu:.2f}  = {1e6 / cpu:.0f} req/s on a whole core; "
            f"it had {share:.0%} of CPU 0"
        )
    for name, runs in saturated.items():
        if name in ("uvicorn", "naive streaming proxy"):
            continue
        emit_ratio(
            "server",
            f"{name}, 32 connections",
            best[name]["rps"],
            base["rps"],
            "req/s",
            "uvicorn",
            None,
        )
        cpu = statistics.median(x["cpu_us"] for x in runs)
        emit(
            "server",
            f"{name}, CPU per call at saturation (lower is better)",
            rate=f"{cpu:.0f} us",
            reference=f"uvicorn {base_cpu:.0f} us",
            ratio=cpu / base_cpu,
            target=NONE,
            met=None,
        )
    print("  ratio to uvicorn, round by round (req/s; CPU per call):")
    for name, runs in saturated.items():
        if name in ("uvicorn", "naive streaming proxy"):
            continue
        pairs = list(zip(runs, saturated["uvicorn"], strict=True))
        rates = ", ".join(f"{a['rps'] / b['rps']:.2f}" for a, b in pairs)
        cpu_ratios = ", ".join(f"{a['cpu_us'] / b['cpu_us']:.2f}" for a, b in pairs)
        print(f"    {name:20s}: req/s {rates}; CPU {cpu_ratios}")
    for label, runs_of in (
        (f"{CONNECTIONS} connections paced to the naive proxy's rate", paced),
        ("1 connection", light),
    ):
        print(f"  latency, {label} (median of {PACED_ROUNDS} interleaved runs of {DURATION}s):")
        for name, runs in runs_of.items():
            p50 = statistics.median(x["p50"] for x in runs)
            p99s = sorted(x["p99"] for x in runs)
            cpu = statistics.median(x["cpu_us"] for x in runs)
            rps = statistics.median(x["rps"] for x in runs)
            p99 = statistics.median(p99s)
            print(
                f"    {name:20s}: {rps:6.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f}"
                f" ms [{p99s[0]:.2f}-{p99s[-1]:.2f}]  CPU/call {cpu:.1f} us"
            )
            emit(
                "server",
                f"{name}, {label}",
                rate=f"p99 {p99:.2f} ms, CPU {cpu:.0f} us/call",
                reference="median of interleaved runs",
                ratio=None,
                target=NONE,
                met=None,
            )


if __name__ == "__main__":
    main()
