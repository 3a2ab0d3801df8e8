"""scripts/seed-console at a small size: valid plugins, a chain that verifies, a gateway that
serves the seeded registry (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from support.procs import CoreProcess, admin_headers

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "seed_console.py"


def run_seed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_seed_fills_a_registry_whose_chain_verifies(db_url: str, tmp_path: Path) -> None:
    done = run_seed("--database-url", db_url, "--plugins", "20", "--audit", "500", "--verify")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["ok"] is True
    assert stats["checked"] == 500
    assert stats["last_id"] == 500
    env = {"VIVIFIED_HEALTH_INTERVAL": "3600", "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01"}
    if not db_url.startswith("sqlite"):
        env["VIVIFIED_DATABASE_URL"] = db_url
    else:
        env["VIVIFIED_DATA_DIR"] = str(Path(db_url.removeprefix("sqlite:///")).parent)
    gw = CoreProcess("gateway", tmp_path / "gw", env).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False, timeout=60) as c:
            plugins = c.get("/plugins", headers=admin_headers())
            assert plugins.status_code == 200, plugins.text
            body = plugins.json()
            items = body["items"] if isinstance(body, dict) else body
            seeded = sorted(p["id"] for p in items if p["id"].startswith("seed-"))
            assert seeded == [f"seed-{n:05d}" for n in range(20)]
            statuses = {p["status"] for p in items}
            assert statuses == {"active", "registered", "disabled"}
            verified = c.get("/admin/audit/verify", headers=admin_headers())
            assert verified.status_code == 200, verified.text
            assert verified.json()["ok"] is True, verified.text
            assert verified.json()["checked"] >= 500
    finally:
        gw.stop()


def test_seed_refuses_bad_arguments(tmp_path: Path) -> None:
    done = run_seed("--data-dir", str(tmp_path), "--plugins", "-1")
    assert done.returncode == 2
    assert "--plugins is 0-99999" in done.stderr
    assert not (tmp_path / "registry.db").exists()
