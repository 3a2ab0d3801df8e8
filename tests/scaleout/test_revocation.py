"""Revocation reaches long-lived connections: a WebSocket relay through one gateway and an
intercepted egress tunnel through one proxy are closed within a second of a disable, a
token-generation bump or a grant removal made through another gateway. Relays also end
after an idle timeout and a maximum lifetime."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from scaleout.rig import (
    Deployment,
    chat_pair,
    fetcher,
    tls_through,
    within,
)
from support.audit import wait_for_audit
from support.egress import closed_by_peer, get_inside
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


@contextmanager
def open_relay(gw: CoreProcess, target: str, token: str) -> Iterator[ClientConnection]:
    with connect(
        "ws" + gw.url[4:] + f"/{target}/chat",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    ) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "PING"
        yield ws


def closed(ws: ClientConnection) -> bool:
    try:
        ws.recv(timeout=0.01)
    except TimeoutError:
        return False
    except ConnectionClosed:
        return True
    return False


def close_frame(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as ended:
        ws.recv(timeout=5)
    frame = ended.value.rcvd
    assert frame is not None, "core closes the relay with a close frame"
    return frame.code, frame.reason


def admitted(dep: Deployment, caller: str, target: str) -> bool:
    """Whether gateway 1 (its snapshot) would admit caller -> target now."""
    query = {"caller": caller, "target": target, "path": "/api/chat"}
    r = dep.admin(1, "GET", "/admin/policy/explain", params=query)
    assert r.status_code == 200, r.text
    return bool(r.json()["decision"] == "allow")


def reregister(dep: Deployment, pid: str) -> None:
    """The plugin registers again with its own token: its generation is bumped."""
    with dep.client(0) as c:
        r = c.get(f"/plugins/{pid}", headers=admin_headers())
        assert r.status_code == 200, r.text
        r = register(c, r.json()["manifest"], dep.tokens[pid])
        assert r.status_code == 200, r.text


def disable(dep: Deployment, pid: str) -> None:
    r = dep.admin(0, "POST", f"/plugins/{pid}/disable")
    assert r.status_code == 200, r.text


Action = Callable[[Deployment, str, str, str], None]


def _grant_removed(dep: Deployment, target: str, caller: str, grant: str) -> None:
    r = dep.admin(0, "DELETE", f"/admin/grants/{grant}")
    assert r.status_code in (200, 204), r.text


@pytest.mark.parametrize(
    ("action", "by_grant", "reason"),
    [
        pytest.param(
            lambda d, t, c, g: disable(d, c), False, "caller_not_active", id="caller-disabled"
        ),
        pytest.param(
            lambda d, t, c, g: disable(d, t), False, "target_not_active", id="target-disabled"
        ),
        pytest.param(lambda d, t, c, g: reregister(d, c), False, "revoked", id="generation-bump"),
        pytest.param(_grant_removed, True, "not_permitted", id="grant-removed"),
    ],
)
def test_relay_on_the_other_gateway_closes_within_a_second(
    deployment: Deployment,
    action: Action,
    by_grant: bool,
    reason: str,
    request: pytest.FixtureRequest,
) -> None:
    dep = deployment
    suffix = request.node.callspec.id
    target, caller, token = chat_pair(dep, suffix, depends=not by_grant)
    grant = ""
    if by_grant:
        r = dep.admin(0, "POST", "/admin/grants", json={"caller": caller, "target": target})
        assert r.status_code == 201, r.text
        grant = r.json()["id"]
        within(lambda: admitted(dep, caller, target), 5.0, "the grant reaches the other gateway")
    with open_relay(dep.gateways[1], target, token) as ws:
        time.sleep(0.2)  # part of the test: an open relay stays open while nothing changes
        assert not closed(ws)
        action(dep, target, caller, grant)
        within(lambda: closed(ws), 1.0, "the relay on the other gateway is closed")
        assert close_frame(ws) == (1008, reason)
    with dep.client(1) as c:  # the relay's one record says why core ended it
        (record,) = wait_for_audit(
            c, lane="operator", actor=caller, where=lambda a: a["status"] == 101
        )
    assert (record["target"], record["decision"]) == (target, "allow")
    assert record["detail"]["closed"] == reason


def test_an_unrelated_change_leaves_relays_open(deployment: Deployment) -> None:
    dep = deployment
    target, _caller, token = chat_pair(dep, "calm")
    other = dep.register(simple("calm-bystander"))
    assert other
    with open_relay(dep.gateways[1], target, token) as ws:
        disable(dep, "calm-bystander")
        time.sleep(1.0)  # part of the test: a second in which the relay must survive
        ws.send("still")
        assert ws.recv(timeout=5) == "STILL"


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        pytest.param(disable, "plugin_not_active", id="disabled"),
        pytest.param(reregister, "revoked", id="generation-bump"),
    ],
)
def test_intercepted_tunnel_closes_within_a_second(
    deployment: Deployment,
    action: Callable[[Deployment, str], None],
    reason: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    dep = deployment
    pid = f"tunneler-{request.node.callspec.id}"
    token = fetcher(dep, pid)
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(httpx.get(dep.gateways[0].url + "/egress/ca.pem", trust_env=False).content)
    with tls_through(dep.proxies[1], pid, token, dep.up, cafile) as tls:
        assert get_inside(tls, dep.up) == 200
        assert get_inside(tls, dep.up) == 200  # keep-alive: the session stays open
        assert not closed_by_peer(tls)
        action(dep, pid)
        within(lambda: closed_by_peer(tls), 1.0, "the tunnel through the other proxy is closed")
    with dep.client(0) as c:
        (record,) = wait_for_audit(
            c, lane="egress", actor=pid, where=lambda a: a["detail"].get("closed") is True
        )
    assert (record["action"], record["decision"], record["reason"]) == ("tunnel", "deny", reason)
    assert record["target"] == f"api.example.com:{dep.up.https_port}"


# --- lifetime limits (one gateway of its own, with short limits) -----------------------------


@pytest.fixture(scope="module")
def short_lived(
    tmp_path_factory: pytest.TempPathFactory, ws_target: str
) -> Iterator[tuple[CoreProcess, str, str]]:
    env = {"VIVIFIED_WS_IDLE_TIMEOUT": "1", "VIVIFIED_WS_MAX_LIFETIME": "3"}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("limits")), env).start()
    try:
        with httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c:
            from support.procs import registration_token

            m = simple("lim-chat", base_url=ws_target, endpoints={"chat": "/api/chat"})
            assert register(c, m, registration_token(c)).status_code == 201
            r = register(c, simple("lim-talker", dependencies=["lim-chat"]), registration_token(c))
            assert r.status_code == 201, r.text
            yield gw, "lim-chat", r.json()["token"]
    finally:
        gw.stop()


def test_an_idle_relay_closes_after_the_idle_timeout(
    short_lived: tuple[CoreProcess, str, str],
) -> None:
    gw, target, token = short_lived
    with open_relay(gw, target, token) as ws:
        started = time.monotonic()
        within(lambda: closed(ws), 2.5, "the idle relay is closed")
        assert time.monotonic() - started >= 0.8
        assert close_frame(ws) == (1001, "ws_idle_timeout")


def test_a_busy_relay_lives_until_the_maximum_lifetime(
    short_lived: tuple[CoreProcess, str, str],
) -> None:
    gw, target, token = short_lived
    started = time.monotonic()
    with open_relay(gw, target, token) as ws:
        ended, frame = None, None
        while time.monotonic() - started < 6:
            try:
                ws.send("tick")
                ws.recv(timeout=1)
            except ConnectionClosed as exc:
                ended, frame = time.monotonic() - started, exc.rcvd
                break
            time.sleep(0.25)  # part of the test: traffic well inside the idle timeout
        assert ended is not None, "the relay outlived its maximum lifetime"
        assert 2.5 <= ended <= 4.5
        assert frame is not None
        assert (frame.code, frame.reason) == (1001, "ws_max_lifetime")
