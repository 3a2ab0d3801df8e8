"""A running core for the metrics tests (two gateway workers with NATS, an egress proxy with
its metrics address) and a real Prometheus (Debian's binary) that scrapes both."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.egress import Egress, free_port
from support.procs import CoreProcess, admin_headers
from support.waiting import eventually

PROMETHEUS = shutil.which("prometheus")
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "vivified-rules.yml"


@dataclass
class Hook:
    """The subscriber's webhook and the operator-lane target's API in one app."""

    events: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self, request: Request) -> Response:
        self.events.append(await request.json())
        return JSONResponse({"ok": True})

    async def item(self, request: Request) -> Response:
        return JSONResponse({"id": request.path_params["id"]})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/events", self.receive, methods=["POST"]),
                Route("/api/items/{id}", self.item),
            ]
        )


@dataclass
class Core:
    gw: CoreProcess
    egress: Egress
    egress_metrics_port: int
    tokens: dict[str, str]
    metrics_token: str
    other_admin_token: str
    hook: Hook

    def call(self, caller: str | None, path: str) -> httpx.Response:
        """One operator-lane call on a fresh connection (the kernel picks the worker)."""
        headers = {"Authorization": f"Bearer {self.tokens[caller]}"} if caller else {}
        return httpx.get(self.gw.url + path, headers=headers, trust_env=False, timeout=30)

    def scrape(self, token: str | None = None) -> httpx.Response:
        token = self.metrics_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.gw.url + "/metrics", headers=headers, trust_env=False, timeout=30)

    def worker_pids(self) -> list[int]:
        assert self.gw.proc is not None
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                if int(fields[1]) == self.gw.proc.pid and fields[0] != "Z":
                    found.append(int(entry.name))
        return sorted(found)

    def multiproc_dir(self) -> Path:
        """The workers' PROMETHEUS_MULTIPROC_DIR (from a worker's environment)."""
        pid = self.worker_pids()[0]
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        value = next(e for e in env if e.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
        return Path(value.split(b"=", 1)[1].decode())


def make_admin(c: httpx.Client, name: str, scopes: list[str]) -> str:
    r = c.post("/admin/users", json={"name": name, "scopes": scopes}, headers=admin_headers())
    assert r.status_code == 201, r.text
    r = c.post(f"/admin/users/{r.json()['id']}/tokens", json={"name": "t"}, headers=admin_headers())
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        r = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "success", body
        return [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return result[0][1] if result else None

    def wait_value(self, expr: str, expected: float, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.value(expr)) != expected:
            assert time.monotonic() < deadline, f"{expr}: {got}, not {expected}, after {timeout}s"
            time.sleep(0.2)

    def targets_up(self) -> bool:
        r = httpx.get(self.url + "/api/v1/targets", timeout=10).json()
        active = r["data"]["activeTargets"]
        return len(active) == 2 and all(t["health"] == "up" for t in active)


@contextmanager
def prometheus(tmp: Path, gateway_port: int, egress_port: int, token: str) -> Iterator[Prometheus]:
    """Debian's `prometheus`, scraping the gateway (bearer token file) and the egress proxy
    every second; storage in `tmp`; on a free loopback port."""
    assert PROMETHEUS is not None
    tmp.mkdir(parents=True, exist_ok=True)
    token_file = tmp / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "vivified-gateway",
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}],
            },
            {
                "job_name": "vivified-egress",
                "static_configs": [{"targets": [f"127.0.0.1:{egress_port}"]}],
            },
        ],
    }
    cfg = tmp / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=out,
        )
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log)
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(prom.url + "/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, 30, "prometheus ready")
        eventually(prom.targets_up, 30, "both targets scraped")
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def families(text: str) -> dict[str, float]:
    """`name{labels}` → value of a Prometheus text exposition (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def wait_ready(gw: CoreProcess) -> None:
    eventually(
        lambda: httpx.get(gw.url + "/readyz", trust_env=False, timeout=5).status_code == 200,
        60,
        "gateway ready",
    )
