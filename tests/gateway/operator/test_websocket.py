"""WebSocket upgrades on the operator lane: admitted like HTTP calls, then relayed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json(
        {
            "caller": ws.headers.get("x-vivified-caller"),
            "spoofed": ws.headers.get("x-vivified-spoof"),
            "has_assertion": "x-vivified-assertion" in ws.headers,
            "has_authorization": "authorization" in ws.headers,
        }
    )
    while True:
        text = await ws.receive_text()
        if text == "bye":
            await ws.close(code=4000)
            return
        await ws.send_text(text.upper())


@dataclass
class WsLane:
    gw: CoreProcess
    token: str

    def url(self, path: str) -> str:
        return "ws" + self.gw.url[4:] + path


@pytest.fixture(scope="module")
def ws_lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsLane]:
    app = Starlette(routes=[WebSocketRoute("/api/chat", echo)])
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("ws"))).start()
    try:
        with serve_in_thread(app) as url, httpx.Client(base_url=gw.url, trust_env=False) as c:
            target = simple("chat", base_url=url, endpoints={"chat": "/api/chat"})
            assert register(c, target, registration_token(c)).status_code == 201
            r = register(c, simple("talker", dependencies=["chat"]), registration_token(c))
            yield WsLane(gw, r.json()["token"])
    finally:
        gw.stop()


def test_websocket_is_relayed_with_core_identity(ws_lane: WsLane) -> None:
    headers = {"Authorization": f"Bearer {ws_lane.token}", "X-Vivified-Spoof": "evil"}
    with connect(ws_lane.url("/chat/chat"), additional_headers=headers) as ws:
        hello = ws.recv(timeout=10)
        assert '"caller":"talker"' in hello.replace(" ", "")
        assert '"spoofed":null' in hello.replace(" ", "")
        assert '"has_assertion":true' in hello.replace(" ", "")
        assert '"has_authorization":false' in hello.replace(" ", "")
        ws.send("hello")
        assert ws.recv(timeout=10) == "HELLO"
        ws.send("bye")
        with pytest.raises(Exception):  # noqa: B017,PT011  (closed by the target)
            ws.recv(timeout=10)
    deadline = time.monotonic() + 10
    found = False
    while not found and time.monotonic() < deadline:
        audit = httpx.get(
            ws_lane.gw.url + "/admin/audit",
            params={"lane": "operator", "actor": "talker"},
            headers=admin_headers(),
            trust_env=False,
        ).json()["items"]
        found = any(a["status"] == 101 and a["bytes_in"] > 0 for a in audit)
        time.sleep(0.1)
    assert found


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        pytest.param("/chat/elsewhere", True, id="undeclared-endpoint"),
        pytest.param("/chat/chat", False, id="no-token"),
        pytest.param("/nobody/chat", True, id="unknown-target"),
    ],
)
def test_refused_upgrades(ws_lane: WsLane, path: str, auth: bool) -> None:
    headers = {"Authorization": f"Bearer {ws_lane.token}"} if auth else {}
    with pytest.raises(InvalidStatus) as err:
        connect(ws_lane.url(path), additional_headers=headers, open_timeout=10)
    assert err.value.response.status_code == 403
