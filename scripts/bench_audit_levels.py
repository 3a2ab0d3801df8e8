"""Operator-lane throughput by audit level, same run: a `complete` target beside a `basic` one.

    .venv/bin/python scripts/bench_audit_levels.py [--seconds 5] [--size 65536] [--concurrency 16]

Starts a real gateway (SQLite, temp dir) and a real upstream app on loopback, registers a
caller/target pair per level, then POSTs bodies of `--size` bytes for `--seconds` per level,
alternating levels twice; prints requests/s and MiB/s (the `complete` level hashes both bodies
with SHA-256 as they stream)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ADMIN = "bench-admin-token-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


async def sink(request: Request) -> Response:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return Response(b"k" * 1024, media_type="application/octet-stream")


def serve_upstream() -> str:
    app = Starlette(routes=[Route("/api/items/{id}", sink, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def manifest(pid: str, level: str, url: str, deps: list[str]) -> dict[str, object]:
    return {
        "id": pid,
        "name": pid,
        "version": "1.0.0",
        "description": "bench",
        "contracts": ["ReportPlugin"],
        "traits": ["audit_required"],
        "dependencies": deps,
        "allowed_domains": [],
        "base_url": url,
        "endpoints": {"health": "/health", "items": "/api/items/{id}"},
        "security": {"authentication_required": True, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": level},
    }


async def load(url: str, token: str, target: str, body: bytes, seconds: float, n: int) -> int:
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, trust_env=False, timeout=30) as c:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                r = await c.post(
                    f"/{target}/items/1", content=body, headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 200, r.text
                done += 1

        await asyncio.gather(*(worker() for _ in range(n)))
    return done


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--size", type=int, default=64 * 1024)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VIVIFIED_")},
            "VIVIFIED_DATA_DIR": tmp,
            "VIVIFIED_ADMIN_TOKEN": ADMIN,
            "VIVIFIED_LOG_LEVEL": "warning",
        }
        cmd = [sys.executable, "-m", "vivified", "gateway", "--gateway-port", "0"]
        gw = subprocess.Popen([*cmd, "--port-file", str(port_file)], env=env)
        try:
            while not port_file.exists():
                assert gw.poll() is None, "gateway exited"
                time.sleep(0.05)
            url = f"http://127.0.0.1:{port_file.read_text()}"
            up = serve_upstream()
            tokens = {}
            with httpx.Client(base_url=url, trust_env=False, timeout=30) as c:
                for level in ("basic", "complete"):
                    for m in (
                        manifest(f"t-{level}", level, up, []),
                        manifest(f"c-{level}", level, up, [f"t-{level}"]),
                    ):
                        reg = c.post(
                            "/admin/registration-tokens", json={"uses": 1}, headers=ADMIN_HEADERS
                        ).json()["token"]
                        r = c.post(
                            "/plugins/register", json=m, headers={"Authorization": f"Bearer {reg}"}
                        )
                        assert r.status_code == 201, r.text
                        tokens[m["id"]] = r.json()["token"]
            body = os.urandom(args.size)
            results: dict[str, list[float]] = {"basic": [], "complete": []}
            for level in ("basic", "complete", "basic", "complete"):
                n = asyncio.run(
                    load(
                        url,
                        tokens[f"c-{level}"],
                        f"t-{level}",
                        body,
                        args.seconds,
                        args.concurrency,
                    )
                )
                results[level].append(n / args.seconds)
            for level, rates in results.items():
                rate = sum(rates) / len(rates)
                mib = rate * args.size / (1024 * 1024)
                print(f"{level:9s} {rate:8.0f} req/s  {mib:7.1f} MiB/s in  (runs: {rates})")
        finally:
            gw.terminate()
            gw.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
