"""The event lane as its tests see it: a recording webhook, and the subscribers' lag read over
`GET /admin/events/subscribers` as a barrier (consumers made; everything delivered)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from support.procs import CoreProcess, admin_headers


@dataclass
class Hook:
    """A subscriber's webhook; `up` False answers 500; events whose subject is in `hold` are
    kept waiting (in flight, up to 8 s) until it is removed."""

    up: bool = True
    got: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    hold: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)  # ids of the events answered 500

    async def receive(self, request: Request) -> Response:
        event = await request.json()
        if not self.up:
            self.refused.append(event.get("id", ""))
            return JSONResponse({"down": True}, status_code=500)
        deadline = time.monotonic() + 8
        while event.get("subject") in self.hold and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.got.append((event, dict(request.headers)))
        return JSONResponse({"ok": True})

    def ids(self) -> list[str]:
        return [e["id"] for e, _ in self.got]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/events", self.receive, methods=["POST"])])


def subscribers(gw: CoreProcess) -> dict[str, dict[str, Any]]:
    """`GET /admin/events/subscribers` by subscriber: events pending and in flight, counters
    (empty while the gateway cannot answer, e.g. with NATS away)."""
    r = httpx.get(gw.url + "/admin/events/subscribers", headers=admin_headers(), trust_env=False)
    if r.status_code != 200:
        return {}
    return {i["subscriber"]: i for i in r.json()["items"]}


def consumers_ready(gw: CoreProcess, *pids: str) -> bool:
    """Whether each of these subscribers has its consumers (their lag can be read)."""
    lag = subscribers(gw)
    return all(lag.get(pid, {}).get("pending") is not None for pid in pids)


def settled(gw: CoreProcess, *pids: str) -> bool:
    """Whether these subscribers have nothing waiting and nothing in flight: every event
    stored so far was delivered (and acknowledged) or skipped, so no late or duplicate
    delivery can still arrive. The barrier before asserting that something did not happen."""
    lag = subscribers(gw)
    return all(
        pid in lag and (lag[pid].get("pending"), lag[pid].get("in_flight")) == (0, 0)
        for pid in pids
    )
