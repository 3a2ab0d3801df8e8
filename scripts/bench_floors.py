"""Bench helper: the floors. What the gateway's own stack (uvicorn + httptools + uvloop,
nats-py, the lane's keep-alive pool) does with *none* of the work the issue mandates on every
call (no JWT, policy, schema, assertion, audit, metrics or tracing), served like the gateway.
A target above its floor's ratio cannot be met by any gateway on that stack; the rows say how
far each floor is from its target."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench_serve import serve_source

# POST /events with nothing but the JetStream publish (awaited ack, message id for dedup, as
# the lane does) and a 202 answer; GET /ping connects first, so no request races to connect.
EVENTS = """
import itertools, os, nats
js = None
count = itertools.count()

async def answer(send, status, body=b""):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})

async def app(scope, receive, send):
    global js
    if scope["path"] == "/ping":
        if js is None:
            js = (await nats.connect(os.environ["NATS_URL"])).jetstream()
            await js.add_stream(name="BENCH_FLOOR", subjects=["bench.floor.>"])
        return await answer(send, 204)
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    n = next(count)
    await js.publish("bench.floor.x", body, headers={"Nats-Msg-Id": f"{os.getpid()}.{n}"})
    await answer(send, 202, b'{"id":"%d"}' % n)
"""

# GET /x relayed to the upstream's /api/items/42 through the operator lane's own pool
# (vivified.gateway.operator.pool: keep-alive HTTP/1.1, streamed answer), status and the
# content headers passed on.
LANE = """
import os
from vivified.gateway.operator.pool import UpstreamPool
pool = UpstreamPool(limit=256, connect_timeout=5, read_timeout=30)
origin = pool.origin(os.environ["UP"])
head = b"GET /api/items/42 HTTP/1.1\\r\\nhost: %s\\r\\n\\r\\n" % origin.host_header
PASS = {b"content-type", b"content-length"}

async def app(scope, receive, send):
    exchange = await pool.request(origin, head)
    try:
        headers = [(k, v) for k, v in exchange.headers if k.lower() in PASS]
        await send({"type": "http.response.start", "status": exchange.status,
                    "headers": headers})
        while chunk := await exchange.read_chunk():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        pool.release(exchange)
"""


def start_events_floor(tmp: Path, nats_url: str) -> tuple[subprocess.Popen[bytes], str]:
    return serve_source(
        tmp, "bench_events_floor", EVENTS, probe="/ping", env={"NATS_URL": nats_url}
    )


def start_lane_floor(tmp: Path, upstream_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """Pinned to CPU 0 like the gateways and proxies it is compared with."""
    return serve_source(tmp, "bench_lane_floor", LANE, probe="/x", cpu=0, env={"UP": upstream_url})
