"""The worker supervisor both the gateway and the egress proxy use (`vivified.config.workers`),
with small real processes in place of the servers: what each worker is started with, the
port the later workers join, the crash-loop cap, and the `vivified <kind> --worker` command.
(The real workers: tests/gateway/test_workers.py, tests/egress/test_workers.py.)"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from vivified.config.children import ChildFailed
from vivified.config.logs import WORKER_NAME_ENV
from vivified.config.workers import (
    MAX_RESTARTS,
    MULTIPROC_ENV,
    Command,
    Workers,
    vivified_worker,
)

# A stand-in worker: reports how it was started, writes its port file (the port it was given,
# or 4242 for port 0, as a server binding port 0 would), then lives `argv[3]` seconds.
STAND_IN = f"""
import json, os, sys, time
port, port_file, life = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
seen = {{"port": port, "name": os.environ.get("{WORKER_NAME_ENV}"),
        "metrics": os.environ.get("{MULTIPROC_ENV}")}}
open(port_file + ".json", "w").write(json.dumps(seen))
open(port_file, "w").write(str(port or 4242))
time.sleep(life)
"""


def stand_in(life: float) -> Command:
    def command(port: int, port_file: Path) -> list[str]:
        return [sys.executable, "-c", STAND_IN, str(port), str(port_file), str(life)]

    return command


def test_workers_join_the_first_ones_port_with_their_name_and_metrics_dir(
    tmp_path: Path,
) -> None:
    workers = Workers("egress", 3, stand_in(60), tmp_path)
    try:
        assert workers.start(0) == 4242
        seen = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("worker-*.port.json"))]
    finally:
        workers.stop()
    assert [s["port"] for s in seen] == [0, 4242, 4242]  # the first alone, then its port
    assert sorted(s["name"] for s in seen) == [f"egress-worker-{i}" for i in (1, 2, 3)]
    assert {s["metrics"] for s in seen} == {str(tmp_path / "metrics")}
    assert all(p.poll() is not None for p in workers.procs)  # stopped


def keep_replacing(workers: Workers) -> None:
    for _ in range(200):  # bounded: each round waits for the replacements to exit
        time.sleep(0.3)
        workers.check()


def test_a_crash_loop_names_the_kind_and_stops(tmp_path: Path) -> None:
    workers = Workers("egress", 2, stand_in(0.2), tmp_path)
    workers.start(0)
    spawned = workers._n
    with pytest.raises(ChildFailed, match=f"{MAX_RESTARTS + 1} egress workers died"):
        keep_replacing(workers)
    workers.stop()
    assert workers._n == spawned + MAX_RESTARTS


def test_a_first_worker_that_dies_fails_the_start(tmp_path: Path) -> None:
    def dies(port: int, port_file: Path) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(3)"]

    workers = Workers("egress", 2, dies, tmp_path)
    with pytest.raises(ChildFailed, match="an egress worker exited with 3"):
        workers.start(0)
    assert len(workers.procs) == 1  # the rest were never started


@pytest.mark.parametrize("kind", ["gateway", "egress"])
def test_the_worker_command(kind: str) -> None:
    argv = vivified_worker(kind, ["--data-dir", "/d"])(8081, Path("/run/w.port"))
    assert argv == [
        sys.executable,
        "-m",
        "vivified",
        kind,
        "--worker",
        "--data-dir",
        "/d",
        f"--{kind}-port",
        "8081",
        "--port-file",
        "/run/w.port",
    ]
