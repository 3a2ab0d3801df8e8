"""The operator lane while the audit store cannot be written: sensitive targets are refused at
once, every call waits for room once the audit queue is full and then gets 503, and when the
store comes back every call made is in the trail (nothing dropped)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.manifests import seed, simple
from support.procs import CoreProcess, admin_headers, enable, register_all
from support.upstream import serve_in_thread

ENDPOINTS = {"item": "/api/items/{id}"}


@dataclass
class Setup:
    gw: CoreProcess
    token: str
    hits: list[str]

    def call(self, target: str) -> httpx.Response:
        with httpx.Client(base_url=self.gw.url, timeout=30, trust_env=False) as c:
            return c.get(f"/{target}/items/1", headers={"Authorization": f"Bearer {self.token}"})

    def audit_status(self) -> str:
        with httpx.Client(base_url=self.gw.url, timeout=30, trust_env=False) as c:
            return str(c.get("/readyz").json()["checks"]["audit"])

    def trail(self) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.gw.url, timeout=30, trust_env=False) as c:
            r = c.get(
                "/admin/audit",
                params={"lane": "operator", "actor": "caller", "limit": "1000"},
                headers=admin_headers(),
            )
            assert r.status_code == 200, r.text
            items: list[dict[str, Any]] = r.json()["items"]
            return items

    def rename_audit_table(self, old: str, new: str) -> None:
        with sqlite3.connect(self.gw.data_dir / "registry.db", timeout=30) as db:
            db.execute(f"ALTER TABLE {old} RENAME TO {new}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    hits: list[str] = []

    async def item(request: Request) -> Response:
        hits.append(request.url.path)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/api/items/{id}", item)])
    env = {
        "VIVIFIED_AUDIT_QUEUE_SIZE": "4",
        "VIVIFIED_AUDIT_BATCH_SIZE": "2",
        "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01",
        "VIVIFIED_AUDIT_WAIT": "1",
    }
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("auditstore")), env).start()
    try:
        with (
            serve_in_thread(app) as url,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            manifests = [
                simple("plain", base_url=url, endpoints=ENDPOINTS),
                seed(id="pii-store", base_url=url, endpoints=ENDPOINTS, contracts=["StorePlugin"]),
                seed(id="caller", dependencies=["plain", "pii-store"], contracts=["CallerPlugin"]),
            ]
            tokens = register_all(c, manifests)
            enable(c, "pii-store", "caller")
            yield Setup(gw, tokens["caller"], hits)
    finally:
        gw.stop()


def until(check: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_a_failing_store_refuses_sensitive_targets_then_fills_and_recovers(setup: Setup) -> None:
    calls = 0
    for target in ("plain", "pii-store"):
        assert setup.call(target).status_code == 200
        calls += 1
    setup.rename_audit_table("audit_records", "audit_records_away")
    try:
        assert setup.call("plain").status_code == 200  # its record is what fails to write
        calls += 1
        assert until(lambda: setup.audit_status() == "failing")
        r = setup.call("pii-store")
        calls += 1
        assert (r.status_code, r.json()["reason"]) == (503, "audit_unavailable")
        # Non-sensitive calls go on while their records fit in the queue (4), then wait for
        # room (1 s here) and are refused: no call is answered that could not be recorded.
        statuses = []
        for _ in range(10):
            hits_before = len(setup.hits)
            r = setup.call("plain")
            calls += 1
            statuses.append(r.status_code)
            if r.status_code == 503:
                assert r.json()["reason"] == "audit_unavailable"
                assert int(r.headers["retry-after"]) >= 1
                assert len(setup.hits) == hits_before  # refused before reaching the target
                break
        assert statuses[-1] == 503, statuses
        assert set(statuses[:-1]) <= {200}
    finally:
        setup.rename_audit_table("audit_records_away", "audit_records")
    healing: list[int] = []  # calls while the writer catches up may still be refused

    def healed() -> bool:
        healing.append(setup.call("plain").status_code)
        return healing[-1] == 200

    assert until(healed, 30)  # the writer heals
    assert set(healing) <= {200, 503}, healing
    calls += len(healing)
    # every call, answered or refused, is in the trail with its caller and target
    assert until(lambda: len(setup.trail()) >= calls, 30)
    trail = setup.trail()
    assert len(trail) == calls
    refused = [
        (i["target"], i["decision"], i["status"])
        for i in trail
        if i["reason"] == "audit_unavailable"
    ]
    assert sorted(refused) == [("pii-store", "deny", 503)] + [("plain", "deny", 503)] * (
        1 + healing.count(503)
    ), (statuses, healing)
    assert setup.audit_status() == "ok"
