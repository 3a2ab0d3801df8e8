"""WebSocket upgrades on the operator lane: admitted like HTTP calls, then relayed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from support.audit import audit_records, wait_for_audit
from support.manifests import simple
from support.procs import CoreProcess, register, registration_token
from support.upstream import serve_in_thread
from websockets.exceptions import ConnectionClosedError, InvalidStatus
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
        with pytest.raises(ConnectionClosedError) as closed:  # the target closes with 4000
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4000  # the target's close code is relayed as it is
    with httpx.Client(base_url=ws_lane.gw.url, trust_env=False) as c:
        relayed = wait_for_audit(
            c, lane="operator", actor="talker", where=lambda a: a["status"] == 101
        )
    assert [(a["target"], a["decision"], a["reason"]) for a in relayed] == [
        ("chat", "allow", "dependency")
    ]
    assert relayed[0]["bytes_in"] > 0


@pytest.mark.parametrize(
    ("path", "auth", "actor", "target", "status", "reason"),
    [
        pytest.param(
            "/chat/elsewhere",
            True,
            "talker",
            "chat",
            404,
            "endpoint_not_declared",
            id="undeclared-endpoint",
        ),
        pytest.param(
            "/chat/chat", False, "anonymous", "claimed:chat", 401, "missing_token", id="no-token"
        ),
        pytest.param(
            "/nobody/chat", True, "talker", "nobody", 404, "unknown_target", id="unknown-target"
        ),
    ],
)
def test_refused_upgrades(
    ws_lane: WsLane, path: str, auth: bool, actor: str, target: str, status: int, reason: str
) -> None:
    """A refused handshake is a bare 403 (ASGI has no other answer before `accept`); the
    lane's own status and reason are in the audit record."""
    headers = {"Authorization": f"Bearer {ws_lane.token}"} if auth else {}
    query = {"lane": "operator", "actor": actor, "target": target, "decision": "deny"}
    with httpx.Client(base_url=ws_lane.gw.url, trust_env=False) as c:
        before = len(audit_records(c, **query))
        with pytest.raises(InvalidStatus) as err:
            connect(ws_lane.url(path), additional_headers=headers, open_timeout=10)
        assert err.value.response.status_code == 403
        assert err.value.response.body == b""  # nothing about the target leaks
        records = wait_for_audit(c, count=before + 1, **query)
    newest = records[0]
    assert (newest["status"], newest["reason"]) == (status, reason)
