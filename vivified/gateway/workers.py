"""Several gateway processes on one port: `VIVIFIED_GATEWAY_WORKERS`.

One Python process serves one core. With N workers, `vivified gateway` becomes a small
supervisor: it starts the first worker (which migrates the registry, creates the signing key
and the bootstrap admin, as a lone gateway would), then the others on the port the first one
bound. Every worker binds with SO_REUSEPORT and the kernel spreads new connections over them.
Each worker is a full replica, exactly as replicas on separate machines are: they share the
registry, the audit chain, the event consumers and the health leases, and hear each other's
changes on NATS (without NATS, through the periodic snapshot reload only).

A worker that dies is started again on the same port; more than `MAX_RESTARTS` deaths within
`RESTART_WINDOW` seconds stop the whole gateway (exit 1), as does a first worker that never
starts. SIGTERM/SIGINT stop every worker gracefully (then kill after a grace period).

Metrics: every worker gets `PROMETHEUS_MULTIPROC_DIR`, a `metrics/` folder in this
supervisor's own run directory (a fresh temporary directory: empty at start, removed at exit,
never shared by two supervisors), so `GET /metrics` on any worker sums every worker
(`vivified.gateway.metrics`). A dead worker's live gauges are dropped (`mark_process_dead`);
its counters stay in the sums.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from vivified.config.children import ChildFailed, StopSignals, stop_all, wait_port, write_port
from vivified.config.logs import WORKER_NAME_ENV

log = logging.getLogger("vivified.gateway.workers")

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_GRACE = 30.0


class Workers:
    """The worker processes of one gateway; `passthrough` are the settings flags to repeat."""

    def __init__(self, count: int, passthrough: Sequence[str], run_dir: Path) -> None:
        self.count = count
        self.passthrough = list(passthrough)
        self.run_dir = run_dir
        self.metrics_dir = run_dir / "metrics"  # PROMETHEUS_MULTIPROC_DIR of the workers
        self.metrics_dir.mkdir(exist_ok=True)
        self.port = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.deaths: list[float] = []
        self._n = 0

    def _spawn(self, port: int) -> tuple[subprocess.Popen[bytes], Path]:
        self._n += 1
        port_file = self.run_dir / f"worker-{self._n}.port"
        cmd = [sys.executable, "-m", "vivified", "gateway", "--worker", *self.passthrough]
        cmd += ["--gateway-port", str(port), "--port-file", str(port_file)]
        env = {**os.environ, WORKER_NAME_ENV: f"gateway-worker-{self._n}"}  # its log name
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)  # metrics summed over workers
        # Our own interpreter and module with validated settings: no untrusted input.
        return subprocess.Popen(cmd, env=env), port_file  # noqa: S603

    def start(self, port: int) -> int:
        """Start every worker (the first alone, then the rest together); the bound port."""
        first, port_file = self._spawn(port)
        self.procs.append(first)
        self.port = wait_port(port_file, first, "a gateway worker")
        rest = [self._spawn(self.port) for _ in range(self.count - 1)]
        self.procs += [proc for proc, _ in rest]
        for proc, port_file in rest:
            wait_port(port_file, proc, "a gateway worker")
        return self.port

    def check(self) -> None:
        """Start a worker again in place of each one that died."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is None:
                continue
            now = time.monotonic()
            self.deaths = [t for t in self.deaths if t > now - RESTART_WINDOW] + [now]
            log.error("gateway worker %d exited with %d", proc.pid, proc.returncode)
            mark_process_dead(proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
            if len(self.deaths) > MAX_RESTARTS:
                raise ChildFailed(
                    f"{len(self.deaths)} gateway workers died within {RESTART_WINDOW:.0f} s"
                )
            replacement, port_file = self._spawn(self.port)
            self.procs[i] = replacement
            wait_port(port_file, replacement, "a gateway worker")
            log.warning("gateway worker %d replaces it", replacement.pid)

    def stop(self) -> None:
        stop_all(self.procs, STOP_GRACE)


def supervise(count: int, port: int, port_file: str | None, passthrough: Sequence[str]) -> int:
    """Run `count` workers until SIGTERM/SIGINT; writes the shared port to `port_file`."""
    signals = StopSignals()
    with tempfile.TemporaryDirectory(prefix="vivified-workers-") as run_dir:
        workers = Workers(count, passthrough, Path(run_dir))
        try:
            bound = workers.start(port)
            log.info("gateway: %d workers on port %d", count, bound)
            if port_file:
                write_port(port_file, bound)
            while not signals.stop:
                workers.check()
                time.sleep(0.2)
        except ChildFailed as exc:
            log.error("gateway stopped: %s", exc)
            return 1
        finally:
            workers.stop()
    return 0
