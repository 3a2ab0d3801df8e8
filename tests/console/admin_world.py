"""The world of the admin-page tests: NATS, a gateway and a real egress proxy sharing one
registry, a subscriber webhook that can be switched off (dead letters), and a few plugins."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from console.browser import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.egress import basic, raw_exchange
from support.procs import CoreProcess, admin_headers


@dataclass
class Hook:
    """A subscriber's webhook: `up` False answers 500 (so deliveries end as dead letters)."""

    up: bool = True
    got: list[str] = field(default_factory=list)

    async def receive(self, request: Request) -> Response:
        event = await request.json()
        if not self.up:
            return JSONResponse({"down": True}, status_code=500)
        self.got.append(str(event.get("id", "")))
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/events", self.receive, methods=["POST"])])


@dataclass
class World:
    console: Console
    egress: CoreProcess
    hook: Hook
    tokens: dict[str, str]
    audit_token: str

    @property
    def gw(self) -> CoreProcess:
        return self.console.gw

    def api(self) -> httpx.Client:
        return self.console.api()

    def probe(self, host: str = "api.example.com", plugin: str = "fetcher") -> str:
        """A CONNECT through the egress proxy: "200", or its refusal's reason code."""
        target = f"{host}:{self.gw.port}"
        request = (
            f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
            f"Proxy-Authorization: {basic(plugin, self.tokens[plugin])}\r\n\r\n"
        ).encode()
        status, headers, _body, sock = raw_exchange(self.egress.port, request)
        sock.close()
        return str(status) if status == 200 else headers.get("x-vivified-egress-error", str(status))

    def publish(self, event_id: str) -> None:
        r = httpx.post(
            self.gw.url + "/events",
            json={
                "type": "UserCreated",
                "data": {"user_id": "u1", "username": "ada"},
                "id": event_id,
            },
            headers={"Authorization": f"Bearer {self.tokens['hr-app']}"},
            trust_env=False,
            timeout=10,
        )
        assert r.status_code == 202, r.text

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.api() as c:
            r = c.get("/admin/events/dead-letters")
            assert r.status_code == 200, r.text
            items: list[dict[str, Any]] = r.json()["items"]
            return items


def until(check: Callable[[], Any], bound: float = 10.0, step: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy (bounded); its last value."""
    deadline = time.monotonic() + bound
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def audit_rows(world: World, **query: str) -> list[dict[str, Any]]:
    with world.api() as c:
        r = c.get("/admin/audit", params={"limit": "1000", **query})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


def admin_get(world: World, path: str) -> Any:
    with world.api() as c:
        r = c.get(path)
        assert r.status_code == 200, r.text
        return r.json()


def headers_of(token: str) -> dict[str, str]:
    return admin_headers(token)
