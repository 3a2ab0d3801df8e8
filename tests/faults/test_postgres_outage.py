"""The registry's PostgreSQL goes away under operator-lane load and comes back.

A private server (tests/support/pg.py), never the machine's shared one. What the code
promises: `/readyz` says `not_ready` while the database is down; the audit writer keeps its
backlog and retries (nothing dropped) and, once a write has failed, calls to PII/PHI targets
are refused with 503 `audit_unavailable` (fail closed) while other calls go on; when the
server is back, the writer drains its backlog and everything recovers without a restart.
So: every call that got a 2xx has its audit record afterwards, and so does every refusal.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.audit import audit_records
from support.load import Loop
from support.manifests import seed, simple
from support.pg import PrivatePostgres, pg_bin_dir
from support.procs import (
    CoreProcess,
    admin_headers,
    enable,
    register_all,
)
from support.upstream import serve_in_thread
from support.waiting import eventually


async def item(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]})


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


UPSTREAM = Starlette(
    routes=[Route("/api/items/{id}", item), Route("/health", health)],
)


@dataclass
class Answer:
    target: str
    status: int
    reason: str
    request_id: str
    at: float


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb refuses root")
    server = PrivatePostgres(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@dataclass
class Rig:
    gw: CoreProcess
    token: str


@pytest.fixture
def rig(pg: PrivatePostgres, tmp_path: Path) -> Iterator[Rig]:
    env = {"VIVIFIED_DATABASE_URL": pg.url, "VIVIFIED_HEALTH_INTERVAL": "600"}
    gw = CoreProcess("gateway", tmp_path / "gw", env).start()
    try:
        with (
            serve_in_thread(UPSTREAM) as up,
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
        ):
            endpoints = {"health": "/health", "items": "/api/items/{id}"}
            plugins = [
                seed(id="caller", contracts=["CallerPlugin"]),
                seed(id="pii-svc", contracts=["PiiStorePlugin"], base_url=up, endpoints=endpoints),
                simple("plain-svc", base_url=up, endpoints=endpoints),
            ]
            tokens = register_all(c, plugins)
            enable(c, "caller", "pii-svc")
            for target in ("pii-svc", "plain-svc"):
                r = c.post(
                    "/admin/grants",
                    json={"caller": "caller", "target": target},
                    headers=admin_headers(),
                )
                assert r.status_code == 201, r.text
            yield Rig(gw, tokens["caller"])
    finally:
        gw.stop()


def caller_loop(rig: Rig, target: str) -> Loop[Answer]:
    client = httpx.Client(base_url=rig.gw.url, trust_env=False, timeout=15)
    headers = {"Authorization": f"Bearer {rig.token}"}

    def step(i: int) -> Answer:
        r = client.get(f"/{target}/items/{i}", headers=headers)
        reason = ""
        if r.status_code == 200:
            assert r.json() == {"id": str(i)}, r.text
        else:
            assert r.headers["content-type"] == "application/problem+json", r.text
            reason = r.json()["reason"]
        return Answer(
            target, r.status_code, reason, r.headers["x-vivified-request-id"], time.monotonic()
        )

    return Loop(step, count=5000, seconds=50, pause=0.02, finish=client.close)


def readyz(gw: CoreProcess) -> tuple[int, dict[str, object]]:
    r = httpx.get(gw.url + "/readyz", trust_env=False, timeout=10)
    return r.status_code, r.json()


def test_postgres_stopped_and_restarted_under_operator_load(pg: PrivatePostgres, rig: Rig) -> None:
    pid = rig.gw.proc.pid if rig.gw.proc else 0
    assert readyz(rig.gw)[0] == 200
    pii, plain = caller_loop(rig, "pii-svc").start(), caller_loop(rig, "plain-svc").start()
    try:
        eventually(lambda: len(pii.results) >= 20 and len(plain.results) >= 20, 20, "load")
        stopped_at = time.monotonic()
        pg.stop("fast")

        eventually(lambda: readyz(rig.gw)[0] == 503, 15, "not ready while it is down")
        body = readyz(rig.gw)[1]
        assert body["status"] == "not_ready", body
        assert body["checks"]["database"] == "unavailable", body  # type: ignore[index]
        eventually(
            lambda: any(a.reason == "audit_unavailable" for a in pii.results[-5:]),
            15,
            "PII calls refused while the audit store is down",
        )
        closed_at = time.monotonic()
        plain_before = len(plain.results)
        eventually(lambda: len(plain.results) >= plain_before + 20, 15, "plain calls go on")
        assert readyz(rig.gw)[1]["checks"]["audit"] == "failing"  # type: ignore[index]

        pg.start()
        eventually(lambda: readyz(rig.gw)[0] == 200, 30, "ready again")
        back_at = time.monotonic()
        eventually(
            lambda: any(a.status == 200 and a.at > back_at for a in pii.results[-5:]),
            20,
            "PII calls answered again",
        )
    finally:
        pii.stop()
        plain.stop()
        pii.join()
        plain.join()
    assert not pii.errors, pii.errors
    assert not plain.errors, plain.errors
    assert rig.gw.proc is not None
    assert rig.gw.proc.poll() is None
    assert rig.gw.proc.pid == pid  # recovered without restarting core

    answers = pii.results + plain.results
    # PII: answered, or refused closed; never anything else.
    assert {(a.status, a.reason) for a in pii.results} <= {(200, ""), (503, "audit_unavailable")}
    refused = [a for a in pii.results if a.status == 503]
    assert refused
    assert all(a.at > stopped_at for a in refused)
    # Other calls went on: every one answered, before, during and after the outage.
    assert {(a.status, a.reason) for a in plain.results} == {(200, "")}
    during = [a for a in plain.results if closed_at < a.at < back_at]
    assert len(during) >= 20

    # No accepted call's record is lost: every answer (2xx and refusals) is in the trail.
    with httpx.Client(base_url=rig.gw.url, trust_env=False, timeout=30) as c:

        def recorded() -> dict[str, tuple[int, str]]:
            rows = audit_records(c, lane="operator", actor="caller")
            return {r["request_id"]: (r["status"], r["reason"]) for r in rows}

        eventually(lambda: {a.request_id for a in answers} <= set(recorded()), 30, "records")
        rows = recorded()
        accepted = [a for a in answers if a.status == 200]
        assert all(rows[a.request_id][0] == 200 for a in accepted)
        assert all(rows[a.request_id] == (503, "audit_unavailable") for a in refused)
        assert len(rows) == len(answers)
        verify = c.get("/admin/audit/verify", headers=admin_headers())
        assert verify.status_code == 200, verify.text
        assert verify.json()["ok"] is True, verify.text
    print(
        f"\nPostgreSQL outage: {len(accepted)} calls answered 2xx, {len(refused)} PII calls "
        f"refused audit_unavailable, {len(during)} plain calls answered while it was down; "
        f"{len(answers)} audit records, all present"
    )
