"""One running instance per data dir: a second `vivified up` (or a standalone gateway) on it
exits 1 with one line naming the running one, and leaves it intact: its port files, its
nats-server, its lock; it still answers. Standalone gateways and egress proxies share."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.procs import ADMIN_TOKEN, CoreProcess, clean_env
from support.up import alive, children_of, read_banner


@dataclass
class Running:
    proc: subprocess.Popen[str]
    data: Path
    ports: dict[str, int]
    kids: list[int]
    port_files: dict[str, str]

    def answers(self) -> bool:
        r = httpx.get(f"http://127.0.0.1:{self.ports['gateway']}/healthz", trust_env=False)
        return r.status_code == 200


def _env(data: Path) -> dict[str, str]:
    return clean_env(
        {
            "VIVIFIED_DATA_DIR": str(data),
            "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN,
            "VIVIFIED_LOG_LEVEL": "warning",
        }
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data = Path(tmp_path_factory.mktemp("locked"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"],
        env=_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_banner(proc)
        files = {n: (data / "run" / f"{n}.port").read_text() for n in ("gateway", "egress")}
        ports = {n: int(v) for n, v in files.items()}
        yield Running(proc, data, ports, children_of(proc.pid), files)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=45)
        if proc.stdout is not None:
            proc.stdout.close()


def second(command: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified", command, f"--{command}-port", "0"]
        if command != "up"
        else [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"],
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], command: str, data: Path) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith(f"vivified {command}: data dir {data.resolve()} is in use by "), line
    assert "nothing was changed" in line
    return line


@pytest.mark.parametrize("command", ["up", "gateway", "egress"])
def test_a_second_start_names_the_running_up_and_changes_nothing(
    command: str, running: Running
) -> None:
    lock_before = (running.data / "lock").read_text()
    done = second(command, running.data)
    line = assert_one_line(done, command, running.data)
    gw, eg = running.ports["gateway"], running.ports["egress"]
    assert f"`vivified up` (pid {running.proc.pid}, gateway port {gw}, egress port {eg})" in line
    # the first instance is intact: port files, lock, children (nats-server too), answers
    for name, content in running.port_files.items():
        assert (running.data / "run" / f"{name}.port").read_text() == content
    assert (running.data / "lock").read_text() == lock_before
    assert running.proc.poll() is None
    assert sorted(children_of(running.proc.pid)) == sorted(running.kids)
    assert all(alive(k) for k in running.kids)
    assert running.answers()


def test_up_refuses_a_data_dir_standalone_replicas_use(tmp_path: Path) -> None:
    gw = CoreProcess("gateway", tmp_path).start()
    eg = CoreProcess("egress", tmp_path).start()  # replicas share a data dir
    try:
        done = second("up", tmp_path)
        line = assert_one_line(done, "up", tmp_path)
        assert gw.proc is not None
        assert eg.proc is not None
        assert "`vivified egress` and `vivified gateway` (pid " in line, line
        assert str(gw.proc.pid) in line, line
        assert str(eg.proc.pid) in line, line
        r = httpx.get(gw.url + "/healthz", trust_env=False)
        assert r.status_code == 200
    finally:
        eg.stop()
        gw.stop()


def test_the_lock_goes_with_the_instance(tmp_path: Path) -> None:
    """However `vivified up` ends, the next start on the data dir works."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_banner(proc)
        kids = children_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=45)
        if proc.stdout is not None:
            proc.stdout.close()  # before any assert: a pipe left open fails a later test
    assert code == 0  # a stop after the banner is a normal stop
    deadline = time.monotonic() + 10
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    gw = CoreProcess("gateway", tmp_path).start()  # takes the lock the stopped `up` held
    gw.stop()
