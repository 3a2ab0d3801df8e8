"""Audit over HTTP: one record per attempt; `vivified audit verify` detects tampering."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
from support.audit import audit_records, wait_for_audit
from support.manifests import simple
from support.procs import ADMIN_TOKEN, CoreProcess, admin_headers, clean_env


async def _register_many(url: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as c:
        r = await c.post("/admin/registration-tokens", json={"uses": n}, headers=admin_headers())
        token = r.json()["token"]

        async def one(i: int) -> int:
            resp = await c.post(
                "/plugins/register",
                json=simple(f"burst-{i}"),
                headers={"Authorization": f"Bearer {token}"},
            )
            return resp.status_code

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_concurrent_registrations_make_exactly_n_records(tmp_path: Path) -> None:
    gw = CoreProcess("gateway", tmp_path).start()
    try:
        n = 60
        statuses = asyncio.run(_register_many(gw.url, n))
        assert statuses == [201] * n
        with httpx.Client(base_url=gw.url, trust_env=False) as c:
            records = wait_for_audit(c, count=n, action="register")
            assert len(records) == n
            assert {r["target"] for r in records} == {f"burst-{i}" for i in range(n)}
            denied = c.post("/plugins/register", json=simple("burst-x"))
            assert denied.status_code == 401
            deny = wait_for_audit(c, action="register", decision="deny")
            assert [r["reason"] for r in deny] == ["missing_token"]
            verify = c.get("/admin/audit/verify", headers=admin_headers()).json()
            assert verify["ok"] is True
            # verify drained the writer: still exactly one record per attempt.
            assert len(audit_records(c, action="register")) == n + 1
    finally:
        gw.stop()


def _verify_cli(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vivified", "audit", "verify", "--data-dir", str(data_dir)],
        env=clean_env({"VIVIFIED_ADMIN_TOKEN": ADMIN_TOKEN}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tampered_row_fails_audit_verify(tmp_path: Path) -> None:
    gw = CoreProcess("gateway", tmp_path).start()
    try:
        asyncio.run(_register_many(gw.url, 5))
    finally:
        gw.stop()  # drains the audit queue
    ok = _verify_cli(tmp_path)
    assert ok.returncode == 0, ok.stderr
    with sqlite3.connect(tmp_path / "registry.db") as db:
        db.execute("UPDATE audit_records SET decision = 'deny' WHERE id = 3")
    broken = _verify_cli(tmp_path)
    assert broken.returncode == 1
    assert "record 3" in broken.stderr
