"""Bench: manifest validator throughput and registrations/s over HTTP with audit on."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_table import emit
from support.manifests import SEED_USER_MANAGEMENT, simple
from support.procs import CoreProcess, admin_headers

from vivified.registry.manifest.validator import validate_manifest


def bench_validator(seconds: float = 3.0) -> float:
    manifests = [
        copy.deepcopy(SEED_USER_MANAGEMENT),
        simple("bench-a"),
        simple(
            "bench-b",
            allowed_domains=["api.example.com", "*.example.org"],
            traits=["external_service"],
        ),
    ]
    n = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for m in manifests:
            assert validate_manifest(m).ok
        n += len(manifests)
    return n / (time.perf_counter() - started)


def bench_registrations(url: str, seconds: int = 8, concurrency: int = 16) -> float:
    """wrk POSTs a fresh manifest per request (a Python client would measure itself: httpx
    stalls ~40 ms per request here on small writes)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    with httpx.Client(base_url=url, trust_env=False, timeout=60) as c:
        r = c.post("/admin/registration-tokens", json={"uses": 10_000}, headers=admin_headers())
        token = r.json()["token"]
    template = json.dumps(simple("bench-__ID__"))
    lua = (
        "counter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        f"  local body = string.gsub('{template}', '__ID__', tostring(counter))\n"
        "  return wrk.format('POST', '/plugins/register', "
        f"{{['Content-Type']='application/json', ['Authorization']='Bearer {token}'}}, body)\n"
        "end\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(f.name).unlink()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if bad is not None or m is None:
        sys.exit(f"registration run had failures:\n{out}")
    with httpx.Client(base_url=url, trust_env=False, timeout=120) as c:
        verify = c.get("/admin/audit/verify", headers=admin_headers())
        assert verify.json()["ok"], verify.text
    return float(m.group(1))


def main() -> None:
    rate = bench_validator()
    print(f"validator: {rate:,.0f} manifests/s (seed + 2 variants, one core)")
    with tempfile.TemporaryDirectory() as tmp:
        gw = CoreProcess("gateway", Path(tmp)).start()
        try:
            regs = bench_registrations(gw.url)
        finally:
            gw.stop()
    print(f"registrations over HTTP (SQLite, audit on, 16 concurrent): {regs:,.0f}/s")
    emit(
        "registry",
        "manifest validator (seed + 2 variants)",
        rate=f"{rate:,.0f} manifests/s",
        reference="one core",
        ratio=None,
        target=">= 10,000/s",
        met=rate >= 10_000,
    )
    emit(
        "registry",
        "registrations over HTTP (SQLite, audit on, wrk 16 connections)",
        rate=f"{regs:,.0f}/s",
        reference="—",
        ratio=None,
        target="—",
        met=None,
    )


if __name__ == "__main__":
    main()
