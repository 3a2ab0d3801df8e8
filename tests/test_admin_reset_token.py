"""`vivified admin reset-token`: the way back in when the bootstrap admin token is lost.

It prints a new token once, writes it to `<data dir>/admin-token` (mode 0600), revokes the
earlier bootstrap token(s) at once (a running gateway refuses them) and is audited.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support.procs import ADMIN_TOKEN, CoreProcess, admin_headers, clean_env
from support.up import read_banner


def reset(data: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified", "admin", "reset-token", "--data-dir", str(data)],
        env=clean_env({"VIVIFIED_LOG_LEVEL": "warning", **(env or {})}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def new_token(done: subprocess.CompletedProcess[str], data: Path, revoked: int) -> str:
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    file = data / "admin-token"
    lines = done.stdout.splitlines()
    assert lines[0] == f"New bootstrap admin token (shown once; also in {file}, mode 0600):"
    token = lines[1].strip()
    assert token.startswith("vva_")
    assert done.stdout.count(token) == 1
    assert lines[2].startswith(f"Revoked {revoked} earlier bootstrap token")
    assert file.stat().st_mode & 0o777 == 0o600
    assert file.read_text().strip() == token
    return token


def status_and_reason(url: str, token: str) -> tuple[int, str]:
    r = httpx.get(url + "/admin/users/me/tokens", headers=admin_headers(token), trust_env=False)
    if r.status_code == 200:
        return 200, ""
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    assert token not in r.text
    return r.status_code, r.json()["reason"]


def test_reset_replaces_the_token_of_a_running_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"],
        env=clean_env({"VIVIFIED_DATA_DIR": str(data), "VIVIFIED_LOG_LEVEL": "warning"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = read_banner(proc)
        first = (data / "admin-token").read_text().strip()
        assert banner.count(first) == 1
        assert f"Lost it? `vivified admin reset-token --data-dir {data}`" in banner, banner
        gateway = re.search(r"gateway\s+(http://\S+)", banner)
        assert gateway is not None
        url = gateway.group(1)
        assert status_and_reason(url, first) == (200, "")

        token = new_token(reset(data), data, revoked=1)
        assert status_and_reason(url, token) == (200, "")
        assert status_and_reason(url, first) == (401, "invalid_admin_token")
        r = httpx.get(
            url + "/admin/audit",
            params={"action": "admin_token_reset"},
            headers=admin_headers(token),
            trust_env=False,
        )
        assert r.status_code == 200, r.text
        [record] = r.json()["items"]
        assert (record["actor"], record["target"], record["decision"]) == (
            "operator:cli",
            "admin:bootstrap",
            "allow",
        )
        assert token not in r.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=45)
        if proc.stdout is not None:
            proc.stdout.close()


def test_reset_revokes_the_configured_token_and_earlier_resets(tmp_path: Path) -> None:
    gw = CoreProcess("gateway", tmp_path).start()  # bootstrap admin: VIVIFIED_ADMIN_TOKEN
    try:
        first = new_token(reset(tmp_path), tmp_path, revoked=1)
        assert status_and_reason(gw.url, ADMIN_TOKEN) == (401, "invalid_admin_token")
        second = new_token(reset(tmp_path), tmp_path, revoked=1)
        assert status_and_reason(gw.url, first) == (401, "invalid_admin_token")
        assert status_and_reason(gw.url, second) == (200, "")
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN},
            "VIVIFIED_ADMIN_TOKEN is set: the bootstrap admin's token is that value",
            id="configured-token",
        ),
    ],
)
def test_reset_refuses_when_the_token_is_configured(
    env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    CoreProcess("gateway", tmp_path).start().stop()  # a registry to reset in
    done = reset(tmp_path, env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"vivified admin reset-token: {expected}"), lines[0]
    assert ADMIN_TOKEN not in done.stderr
    assert not (tmp_path / "admin-token").exists()
