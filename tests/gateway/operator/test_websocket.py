"""WebSocket upgrades on the operator lane: admitted like HTTP calls, then relayed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from support.audit import Record, audit_records, wait_for_audit
from support.manifests import simple
from support.procs import CoreProcess, register, registration_token
from support.upstream import serve_in_thread
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from vivified.registry.identity.tokens import MAX_LEEWAY


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


def relays_of_talker(c: httpx.Client) -> list[Record]:
    """The relay records (status 101) of `talker`, newest first."""
    return [a for a in audit_records(c, lane="operator", actor="talker") if a["status"] == 101]


def wait_for_relays(c: httpx.Client, count: int) -> list[Record]:
    """`relays_of_talker`, once at least `count` are stored."""
    return wait_for_audit(
        c, count=count, lane="operator", actor="talker", where=lambda a: a["status"] == 101
    )


def test_websocket_is_relayed_with_core_identity(ws_lane: WsLane) -> None:
    # other tests of the module open relays on the same gateway: this one's record is the newest
    with httpx.Client(base_url=ws_lane.gw.url, trust_env=False) as c:
        before = len(relays_of_talker(c))
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
        relayed = wait_for_relays(c, before + 1)
    assert len(relayed) == before + 1  # one record for this relay
    newest = relayed[0]
    assert (newest["target"], newest["decision"], newest["reason"]) == (
        "chat",
        "allow",
        "dependency",
    )
    assert newest["bytes_in"] > 0


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


# --- the caller's token expires while its relay is open ----------------------------------------


def mint(lane: WsLane, ttl: int, *, now: float | None = None) -> tuple[str, int]:
    """A plugin token for `talker` of `ttl` seconds (shorter than `VIVIFIED_TOKEN_TTL` allows),
    signed with the gateway's own key from its registry: (token, exp)."""
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.identity.tokens import TokenService
    from vivified.registry.store.engine import create_engine, session_factory

    gen = jwt.decode(lane.token, options={"verify_signature": False})["gen"]

    async def issue() -> tuple[str, int]:
        engine = create_engine(f"sqlite+aiosqlite:///{lane.gw.data_dir.resolve() / 'registry.db'}")
        try:
            keys = KeyStore(session_factory(engine))
            await keys.load(create=False)
            issued = TokenService(keys, issuer="vivified-core", ttl=ttl).issue_plugin_token(
                "talker", gen, now=now
            )
            return issued.token, issued.expires_at
        finally:
            await engine.dispose()

    return asyncio.run(issue())


@contextmanager
def open_chat(lane: WsLane, token: str) -> Iterator[ClientConnection]:
    with connect(
        lane.url("/chat/chat"),
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    ) as ws:
        assert '"caller":"talker"' in ws.recv(timeout=10).replace(" ", "")  # the target's hello
        yield ws


def expired_relays(lane: WsLane, count: int) -> list[Record]:
    with httpx.Client(base_url=lane.gw.url, trust_env=False) as c:
        return wait_for_audit(
            c,
            count=count,
            lane="operator",
            actor="talker",
            where=lambda a: a["status"] == 101 and a["detail"].get("closed") == "expired",
        )


def test_a_relay_ends_when_the_lane_stops_accepting_its_token(ws_lane: WsLane) -> None:
    """A busy relay ends (1008 `expired`, like a revoked one) when the lane would refuse its
    token, at `exp` plus the clock-skew leeway (as `verify_plugin_token` counts), not before;
    a relay on a token still valid goes on. The token is past its `exp` already, inside the
    leeway, so that the test lasts seconds."""
    before = len(expired_relays(ws_lane, 0))
    with httpx.Client(base_url=ws_lane.gw.url, trust_env=False) as c:
        relays_before = len(relays_of_talker(c))
    token, exp = mint(ws_lane, 60, now=time.time() + 3 - 60 - MAX_LEEWAY)
    until = exp + MAX_LEEWAY  # 3 s from now
    assert exp < time.time() < until - 1
    with open_chat(ws_lane, ws_lane.token) as valid, open_chat(ws_lane, token) as expiring:
        frame, ended_at = None, None
        while time.time() < until + 3:
            for ws, text in ((valid, "still"), (expiring, "tick")):
                try:
                    ws.send(text)
                    assert ws.recv(timeout=5) == text.upper()
                except ConnectionClosed as exc:
                    assert ws is expiring, "the relay on a valid token was closed"
                    frame, ended_at = exc.rcvd, time.time()
                    break
            if frame is not None:
                break
            time.sleep(0.1)  # part of the test: steady traffic, far inside the idle timeout
        assert ended_at is not None, "the relay outlived its token"
        assert until - 0.05 <= ended_at <= until + 1.0  # then, not before, not much later
        assert frame is not None
        assert (frame.code, frame.reason) == (1008, "expired")
        valid.send("after")
        assert valid.recv(timeout=5) == "AFTER"
    (record, *_) = expired_relays(ws_lane, before + 1)
    assert (record["target"], record["decision"], record["reason"]) == (
        "chat",
        "allow",
        "dependency",
    )
    # Both relays' records are in before the test ends, so that a test of the module that
    # runs next counts from a settled trail (its relay's record is the next one).
    with httpx.Client(base_url=ws_lane.gw.url, trust_env=False) as c:
        wait_for_relays(c, relays_before + 2)


def test_a_token_past_the_leeway_is_refused_at_the_upgrade(ws_lane: WsLane) -> None:
    """As before this rule: the lane refuses the expired token; no relay is opened."""
    query = {"lane": "operator", "actor": "anonymous", "target": "claimed:chat"}
    token, _ = mint(ws_lane, 60, now=time.time() - 120)
    with httpx.Client(base_url=ws_lane.gw.url, trust_env=False) as c:
        before = len([a for a in audit_records(c, **query) if a["reason"] == "expired"])
        with pytest.raises(InvalidStatus) as err:
            connect(
                ws_lane.url("/chat/chat"),
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=10,
            )
        assert err.value.response.status_code == 403
        (newest, *_) = wait_for_audit(
            c, count=before + 1, where=lambda a: a["reason"] == "expired", **query
        )
    assert (newest["status"], newest["decision"]) == (401, "deny")
