"""Bench: manifest validator throughput and registrations/s over HTTP with audit on."""

from __future__ import annotations

import asyncio
import copy
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.manifests import SEED_USER_MANAGEMENT, simple
from support.procs import CoreProcess, admin_headers

from vivified.registry.manifest import validate_manifest


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


async def bench_registrations(url: str, n: int = 1000, concurrency: int = 16) -> float:
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as c:
        r = await c.post("/admin/registration-tokens", json={"uses": n}, headers=admin_headers())
        token = r.json()["token"]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                resp = await c.post(
                    "/plugins/register",
                    json=simple(f"bench-{i}"),
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert resp.status_code == 201, resp.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        verify = await c.get("/admin/audit/verify", headers=admin_headers())
        assert verify.json()["ok"], verify.text
        return n / elapsed


def main() -> None:
    rate = bench_validator()
    print(f"validator: {rate:,.0f} manifests/s (seed + 2 variants, one core)")
    with tempfile.TemporaryDirectory() as tmp:
        gw = CoreProcess("gateway", Path(tmp)).start()
        try:
            regs = asyncio.run(bench_registrations(gw.url))
        finally:
            gw.stop()
    print(f"registrations over HTTP (SQLite, audit on, 16 concurrent): {regs:,.0f}/s")


if __name__ == "__main__":
    main()
