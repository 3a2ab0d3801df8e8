"""Several processes of one kind on one port: the supervisor behind `VIVIFIED_GATEWAY_WORKERS`
and `VIVIFIED_EGRESS_WORKERS`.

With N workers, `vivified gateway` or `vivified egress` becomes a small supervisor: it starts
the first worker alone (which migrates the registry and creates what a lone process would
create: signing key, bootstrap admin, the deployment's egress CA), then the others on the port
the first one bound. Every worker binds with SO_REUSEPORT and the kernel spreads new
connections over them. Each worker is a full replica, exactly as replicas on separate machines
are, and hears the others' changes on NATS (without NATS, through its periodic reload only).

A worker that dies is started again on the same port; more than `MAX_RESTARTS` deaths within
`RESTART_WINDOW` seconds stop the whole supervisor (exit 1), as does a first worker that never
starts. SIGTERM/SIGINT stop every worker gracefully (then kill after a grace period).

Metrics: every worker gets `PROMETHEUS_MULTIPROC_DIR`, a `metrics/` folder in this
supervisor's own run directory (a fresh temporary directory: empty at start, removed at exit,
never shared by two supervisors), so one reader of that folder sums every worker. A dead
worker's live gauges are dropped (`mark_process_dead`); its counters stay in the sums. Who
reads the folder is the kind's business (`serving`): the gateway's `/metrics` on any worker,
the egress proxy's listener in its supervisor.

This module is the part both kinds share (gateway and egress never import each other); the
command a worker runs is given by the caller (`vivified_worker`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from vivified.config.children import ChildFailed, StopSignals, stop_all, wait_port, write_port
from vivified.config.logs import WORKER_NAME_ENV

log = logging.getLogger("vivified.workers")

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_GRACE = 30.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

Command = Callable[[int, Path], list[str]]
"""(port to bind, port file to write) -> the worker's argv."""


def vivified_worker(kind: str, passthrough: Sequence[str]) -> Command:
    """`vivified <kind> --worker` with the supervisor's settings flags, on a given port."""

    def command(port: int, port_file: Path) -> list[str]:
        return [
            *(sys.executable, "-m", "vivified", kind, "--worker", *passthrough),
            *(f"--{kind}-port", str(port), "--port-file", str(port_file)),
        ]

    return command


class Workers:
    """The worker processes of one `kind` ("gateway", "egress"), each started by `command`."""

    def __init__(self, kind: str, count: int, command: Command, run_dir: Path) -> None:
        self.kind = kind
        self.count = count
        self.command = command
        self.run_dir = run_dir
        self.metrics_dir = run_dir / "metrics"  # PROMETHEUS_MULTIPROC_DIR of the workers
        self.metrics_dir.mkdir(exist_ok=True)
        self.port = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.deaths: list[float] = []
        self._n = 0

    @property
    def what(self) -> str:
        article = "an" if self.kind[:1] in "aeiou" else "a"
        return f"{article} {self.kind} worker"

    def _spawn(self, port: int) -> tuple[subprocess.Popen[bytes], Path]:
        self._n += 1
        port_file = self.run_dir / f"worker-{self._n}.port"
        env = {**os.environ, WORKER_NAME_ENV: f"{self.kind}-worker-{self._n}"}  # its log name
        env[MULTIPROC_ENV] = str(self.metrics_dir)  # metrics summed over workers
        # Our own interpreter and module with validated settings: no untrusted input.
        return subprocess.Popen(self.command(port, port_file), env=env), port_file  # noqa: S603

    def start(self, port: int) -> int:
        """Start every worker (the first alone, then the rest together); the bound port."""
        first, port_file = self._spawn(port)
        self.procs.append(first)
        self.port = wait_port(port_file, first, self.what)
        rest = [self._spawn(self.port) for _ in range(self.count - 1)]
        self.procs += [proc for proc, _ in rest]
        for proc, port_file in rest:
            wait_port(port_file, proc, self.what)
        return self.port

    def check(self) -> None:
        """Start a worker again in place of each one that died."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is None:
                continue
            now = time.monotonic()
            self.deaths = [t for t in self.deaths if t > now - RESTART_WINDOW] + [now]
            log.error("%s worker %d exited with %d", self.kind, proc.pid, proc.returncode)
            mark_process_dead(proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
            if len(self.deaths) > MAX_RESTARTS:
                raise ChildFailed(
                    f"{len(self.deaths)} {self.kind} workers died within {RESTART_WINDOW:.0f} s"
                )
            replacement, port_file = self._spawn(self.port)
            self.procs[i] = replacement
            wait_port(port_file, replacement, self.what)
            log.warning("%s worker %d replaces it", self.kind, replacement.pid)

    def stop(self) -> None:
        stop_all(self.procs, STOP_GRACE)


Serving = Callable[[Workers], AbstractContextManager[object]]
"""What the supervisor runs beside its workers while they serve (e.g. a metrics listener)."""


def supervise(
    make: Callable[[Path], Workers],
    port: int,
    port_file: str | None,
    *,
    serving: Serving | None = None,
) -> int:
    """Run the workers `make(run_dir)` builds until SIGTERM/SIGINT; writes the shared port to
    `port_file` once every worker listens. 0 on a requested stop, 1 when the workers failed."""
    signals = StopSignals()
    with tempfile.TemporaryDirectory(prefix="vivified-workers-") as run_dir:
        workers = make(Path(run_dir))
        try:
            bound = workers.start(port)
            log.info("%s: %d workers on port %d", workers.kind, workers.count, bound)
            with serving(workers) if serving is not None else contextlib.nullcontext():
                if port_file:
                    write_port(port_file, bound)
                while not signals.stop:
                    workers.check()
                    time.sleep(0.2)
        except ChildFailed as exc:
            log.error("%s stopped: %s", workers.kind, exc)
            return 1
        finally:
            workers.stop()
    return 0
