"""Bench helper: serve an ASGI module, given as source text, with uvicorn (httptools +
uvloop) in a process of its own on a free loopback port, optionally pinned to one CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def pin(cpu: int) -> list[str]:
    """The command prefix that keeps a process on `cpu` (nothing where taskset is missing)."""
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def wait_http(url: str, timeout: float = 20) -> None:
    """The port file appears when the socket is bound; wait until it also answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, trust_env=False, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer")


def serve_source(
    directory: Path,
    name: str,
    source: str,
    *,
    probe: str,
    cpu: int | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Write `source` as `<directory>/<name>.py` and serve its `app`; returns the process and
    its base URL once `probe` (a path) answers."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    port_file = directory / f"{name}.port"
    cmd = (
        "import socket,uvicorn;"
        "s=socket.socket();s.bind(('127.0.0.1',0));"
        f"open({str(port_file)!r},'w').write(str(s.getsockname()[1]));"
        f"uvicorn.Server(uvicorn.Config('{name}:app',log_level='warning',"
        "access_log=False,lifespan='off',http='httptools',loop='uvloop'))"
        ".run(sockets=[s])"
    )
    prefix = pin(cpu) if cpu is not None else []
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-c", cmd], cwd=directory, env={**os.environ, **(env or {})}
    )
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit(f"{name} did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port_file.read_text()}"
    wait_http(url + probe)
    return proc, url


def machine_speed() -> str:
    """How fast this machine runs plain Python, to compare figures between machines: the
    best of three timings of a fixed 10-million-step loop (lower is faster)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return f"machine speed: a 10M-step Python loop takes {best:.2f} s (lower is faster)"
