"""Serve the gateway with uvicorn, reporting the bound port (port 0 picks a free one)."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import uvicorn

from vivified.config.settings import Settings
from vivified.gateway.app import create_app


async def serve_gateway(settings: Settings, *, port_file: str | None = None) -> int:
    """Run until SIGINT/SIGTERM; writes the bound port to `port_file` once listening."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        # Never let a caller rewrite its own address with X-Forwarded-For / Forwarded.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            return 1
        await asyncio.sleep(0.02)
    # Everything built so far (modules, ORM metadata, the core) lives as long as the process:
    # keep it out of every collection, and collect the young generation less often. Measured
    # on the operator lane: p99 ~30 ms instead of ~130 ms at saturation, ~15 % more req/s.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    port = server.servers[0].sockets[0].getsockname()[1]
    if port_file:
        await asyncio.to_thread(_write_port, port_file, port)
    await task
    return 0


def _write_port(port_file: str, port: int) -> None:
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, port_file)  # atomic: a reader never sees a half-written file
