"""`vivified up`: the whole stack (gateway, egress, NATS) from one command, and no orphans."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support.procs import ADMIN_TOKEN, clean_env
from support.up import alive, children_of, read_banner


def test_up_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    env = clean_env(
        {
            "VIVIFIED_DATA_DIR": str(tmp_path),
            "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN,
            "VIVIFIED_LOG_LEVEL": "warning",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as a shell's background job gets it: SIGINT ignored; Ctrl-C must still stop us
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    banner = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        # the banner's own lines, not a log line that happens to name NATS or the data dir
        while not (
            re.search(r"^\s*NATS\s+nats://", banner, re.M)
            and re.search(r"^\s*data dir\s+/", banner, re.M)
        ):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, banner
            banner += line
            assert time.monotonic() < deadline, banner
        gateway = re.search(r"gateway\s+(http://\S+)", banner)
        assert gateway is not None, banner
        assert re.search(r"NATS\s+nats://127\.0\.0\.1:\d+\s+\(embedded", banner), banner
        ready = httpx.get(gateway.group(1) + "/readyz", trust_env=False, timeout=10)
        for _ in range(50):
            if ready.json()["checks"].get("nats") == "ok":
                break
            time.sleep(0.1)
            ready = httpx.get(gateway.group(1) + "/readyz", trust_env=False, timeout=10)
        assert ready.status_code == 200
        assert ready.json()["checks"]["nats"] == "ok"
        kids = children_of(proc.pid)
        assert len(kids) == 3  # nats-server, gateway, egress
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rc = proc.wait(timeout=45)  # children get 10 s, NATS 5 s, then kill
        if proc.stdout is not None:
            proc.stdout.close()
    assert rc == 0
    deadline = time.monotonic() + 5
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kids)


def pasted_commands(banner: str) -> str:
    """The banner's command block, as a user would copy it (indented lines after the heading)."""
    block = banner.split("Register a plugin and approve it", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines() if line.startswith("    "))


def test_banner_commands_work_when_pasted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = clean_env({"VIVIFIED_DATA_DIR": str(data), "VIVIFIED_LOG_LEVEL": "warning"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = read_banner(proc)
        token_file = data / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert re.search(rf"Bootstrap admin token .*\n\s+{re.escape(token)}\n", banner), banner
        assert banner.count(token) == 1, "the token is printed once; the commands read the file"
        script = pasted_commands(banner)
        assert f"ADMIN=$(cat {token_file.resolve()})" in script
        # a fresh shell: no VIVIFIED_* variables, nothing but what the banner sets
        shell_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script + '\necho "plugin=$PLUGIN"'],
            env=shell_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (script, done.stdout, done.stderr)
        assert '"status":"active"' in done.stdout.replace(" ", ""), done.stdout
        assert '"reason": "host_not_allowed"' in done.stdout, done.stdout
        assert done.stdout.rstrip().endswith("plugin=user-management"), done.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=45)
        if proc.stdout is not None:
            proc.stdout.close()
