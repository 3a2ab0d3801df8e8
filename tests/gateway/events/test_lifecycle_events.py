"""Core's own lifecycle events on the event lane: real nats-server, gateway and webhook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.audit import wait_for_audit
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread
from support.waiting import eventually
from vivified_sdk.assertion import verify_assertion

from vivified.config.nats_server import ManagedNats
from vivified.registry.event_catalogue import CORE_EVENTS, data_problems, event_type


@dataclass
class Hook:
    got: list[tuple[float, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    async def receive(self, request: Request) -> Response:
        self.got.append((time.monotonic(), await request.json(), dict(request.headers)))
        return JSONResponse({"ok": True})

    def of(self, kind: str, plugin: str) -> list[tuple[float, dict[str, Any], dict[str, str]]]:
        return [g for g in self.got if g[1]["type"] == kind and g[1]["data"]["plugin_id"] == plugin]


@dataclass
class Rig:
    gw: CoreProcess
    client: httpx.Client
    hook: Hook


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    nats = ManagedNats(tmp_path / "nats")
    url = nats.start()
    env = {"VIVIFIED_NATS_URL": url, "VIVIFIED_DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    gw = CoreProcess("gateway", tmp_path / "gw", env).start()
    hook = Hook()
    app = Starlette(routes=[Route("/events", hook.receive, methods=["POST"])])
    try:
        with (
            serve_in_thread(app) as hook_url,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            watcher = simple(
                "watcher",
                base_url=hook_url,
                endpoints={"health": "/health", "events": "/events"},
                events={"subscribes": list(CORE_EVENTS)},
            )
            r = register(c, watcher, registration_token(c))
            assert r.status_code == 201, r.text

            def ready() -> bool:
                items = c.get("/admin/events/subscribers", headers=admin_headers()).json()["items"]
                return any(i["subscriber"] == "watcher" and i.get("pending") == 0 for i in items)

            eventually(ready)
            yield Rig(gw, c, hook)
    finally:
        gw.stop()
        nats.stop()


def test_catalogue_has_schemas_for_core_events() -> None:
    for kind in CORE_EVENTS:
        entry = event_type(kind)
        assert entry is not None, kind
        assert entry.classification == "internal", kind
    assert data_problems("PluginStatusChanged", {"plugin_id": "p", "to": "disabled"}) == []
    assert data_problems("PluginUnregistered", {}) != []


def test_lifecycle_events_reach_a_subscriber_with_core_assertion(rig: Rig) -> None:
    c, hook = rig.client, rig.hook
    r = register(c, simple("victim"), registration_token(c))
    assert r.status_code == 201, r.text
    eventually(lambda: hook.of("PluginRegistered", "victim"))
    (_, registered, headers) = hook.of("PluginRegistered", "victim")[0]
    assert registered["source"] == "vivified://core"
    assert registered["data"] == {"plugin_id": "victim", "version": "1.0.0", "status": "active"}
    jwks = c.get("/.well-known/jwks.json").json()
    claims = verify_assertion(
        headers["x-vivified-assertion"],
        jwks=jwks,
        audience="watcher",
        method="POST",
        path="/events",
    )
    assert claims["sub"] == "core"

    asked = time.monotonic()
    r = c.post("/plugins/victim/disable", headers=admin_headers())
    assert r.status_code == 200, r.text
    eventually(lambda: hook.of("PluginStatusChanged", "victim"), timeout=5)
    (arrived, changed, _) = hook.of("PluginStatusChanged", "victim")[0]
    assert arrived - asked < 1.0, f"delivered after {arrived - asked:.2f}s"
    (rec,) = wait_for_audit(c, lane="registry", action="disable", target="victim")
    assert changed["data"] == {
        "plugin_id": "victim",
        "from": "active",
        "to": "disabled",
        "reason": "disabled",
        "actor": rec["actor"],
    }
    assert rec["actor"].startswith("admin")

    r = c.delete("/plugins/victim", headers=admin_headers())
    assert r.status_code == 204, r.text
    eventually(lambda: hook.of("PluginUnregistered", "victim"))
    assert hook.of("PluginUnregistered", "victim")[0][1]["data"] == {
        "plugin_id": "victim",
        "actor": rec["actor"],
    }
