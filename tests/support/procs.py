"""Start core's real processes for tests: `vivified gateway` / `vivified egress` on port 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import httpx

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without proxies or VIVIFIED_* settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("VIVIFIED_")
        and k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    }
    env.update(extra or {})
    return env


class CoreProcess:
    """One `vivified <kind>` child process; stopped by its own PID only."""

    def __init__(self, kind: str, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.env = clean_env(
            {
                "VIVIFIED_DATA_DIR": str(data_dir),
                "VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN,
                "VIVIFIED_LOG_LEVEL": "warning",
                **(env or {}),
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path = data_dir / f"{kind}-{time.monotonic_ns()}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> CoreProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.data_dir / f"{self.kind}-{time.monotonic_ns()}.port"
        cmd = [
            sys.executable,
            "-m",
            "vivified",
            self.kind,
            f"--{self.kind}-port",
            "0",
            "--port-file",
            str(port_file),
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early:\n{self.log()}")
            if port_file.exists():
                self.port = int(port_file.read_text())
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not start within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> CoreProcess:
        self.stop()
        return self.start()


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def registration_token(client: httpx.Client, *, plugin_id: str | None = None, uses: int = 1) -> str:
    body: dict[str, object] = {"uses": uses}
    if plugin_id:
        body["plugin_id"] = plugin_id
    r = client.post("/admin/registration-tokens", json=body, headers=admin_headers())
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def register(client: httpx.Client, manifest: Mapping[str, object], token: str) -> httpx.Response:
    return client.post(
        "/plugins/register", json=dict(manifest), headers={"Authorization": f"Bearer {token}"}
    )


def register_all(client: httpx.Client, manifests: Iterable[Mapping[str, object]]) -> dict[str, str]:
    """Register each manifest with a registration token of its own; plugin tokens by id."""
    tokens: dict[str, str] = {}
    for manifest in manifests:
        r = register(client, manifest, registration_token(client))
        assert r.status_code == 201, r.text
        tokens[str(manifest["id"])] = r.json()["token"]
    return tokens


def enable(client: httpx.Client, *plugin_ids: str) -> None:
    for plugin_id in plugin_ids:
        r = client.post(f"/plugins/{plugin_id}/enable", headers=admin_headers())
        assert r.status_code == 200, r.text
