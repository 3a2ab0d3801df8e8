"""Slow clients against a real gateway process: the header-read timeout and the connection cap.

A slowloris client opens connections and never finishes a request head (sends nothing, or
dribbles a few bytes now and then). The gateway closes each one `header_timeout` seconds after
it opened (or after the previous response on keep-alive), answers 408 to a half-sent head,
and answers 503 to a connection over `max_connections` and closes it at once; everyone else is
served as usual: WebSockets and slow request bodies are not cut.
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from support.manifests import simple
from support.procs import CoreProcess, admin_headers, register, registration_token
from support.upstream import serve_in_thread
from websockets.sync.client import connect

HEADER_TIMEOUT = 1.0
# uvicorn closes an idle keep-alive connection after 5 s on its own: stay well under that, so
# only the header timeout can close a connection within this bound.
SINGLE_CLOSE_BOUND = HEADER_TIMEOUT + 2.5
FLOOD_CLOSE_BOUND = HEADER_TIMEOUT + 10  # 1,500 connections on a shared 2-core machine
ATTACKERS = 1500
DRIBBLERS = 5
CAP = 50
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
NEVER_ENDING_HEAD = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 500


async def echo(request: Request) -> Response:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({"path": request.url.path, "size": size})


async def ok(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def shout(ws: WebSocket) -> None:
    await ws.accept()
    while (text := await ws.receive_text()) != "bye":
        await ws.send_text(text.upper())
    await ws.close()


@dataclass
class SlowGateway:
    proc: CoreProcess
    token: str  # the caller plugin's

    def lane(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.proc.url, timeout=30, trust_env=False) as c:
            return c.request(method, path, headers=headers, **kw)


@pytest.fixture(scope="module")
def slow_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowGateway]:
    env = {"VIVIFIED_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("slow")), env).start()
    app = Starlette(
        routes=[
            Route("/health", ok),
            Route("/api/echo", echo, methods=["GET", "POST"]),
            WebSocketRoute("/api/chat", shout),
        ]
    )
    try:
        with serve_in_thread(app) as url, httpx.Client(base_url=gw.url, trust_env=False) as c:
            endpoints = {"health": "/health", "echo": "/api/echo", "chat": "/api/chat"}
            target = simple("target", base_url=url, endpoints=endpoints)
            assert register(c, target, registration_token(c)).status_code == 201
            r = register(c, simple("caller", dependencies=["target"]), registration_token(c))
            assert r.status_code == 201, r.text
            yield SlowGateway(gw, r.json()["token"])
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def capped_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoreProcess]:
    # A long header timeout: the held connections must stay for the whole test.
    env = {"VIVIFIED_MAX_CONNECTIONS": str(CAP), "VIVIFIED_HEADER_TIMEOUT": "120"}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("capped")), env).start()
    yield gw
    gw.stop()


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """Status, headers (lower-case names) and JSON body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length from a blocking socket."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"closed in the middle of a response head: {raw!r}"
        raw += chunk
    _, headers, _ = parse(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    size = len(raw.partition(b"\r\n\r\n")[0]) + 4 + int(headers["content-length"])
    while len(raw) < size:
        chunk = sock.recv(65536)
        assert chunk, f"closed in the middle of a response body: {raw!r}"
        raw += chunk
    return raw


def slow_client(
    port: int, *, after_response: bool, dribble: bool, bound: float = SINGLE_CLOSE_BOUND
) -> tuple[bytes, float]:
    """A client that never completes a request head; what it got before the close, and when.

    With `after_response` it first makes one whole request on the connection (keep-alive);
    with `dribble` it then sends a head one byte every 0.2 s that never ends. Returns the
    bytes received until the server closed, and the seconds from connect (or from the end of
    the first response) until then. Fails if the connection is still open after `bound` s.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        if after_response:
            sock.sendall(HEALTHZ)
            status, _, body = parse(read_response(sock))
            assert (status, body) == (200, {"status": "ok"})
            started = time.monotonic()
        pending = NEVER_ENDING_HEAD if dribble else b""
        received = b""
        sock.settimeout(0.2)
        while time.monotonic() < started + bound:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if pending:
                    sock.send(pending[:1])
                    pending = pending[1:]
                continue
            if not chunk:
                return received, time.monotonic() - started
            received += chunk
    raise AssertionError(f"still open after {bound} s; received {received!r}")


def assert_header_timeout_answer(received: bytes) -> None:
    status, headers, body = parse(received)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert body["status"] == 408
    assert body["reason"] == "header_timeout"
    assert body["type"].endswith("/header_timeout")
    assert "1 s" in body["detail"]


def assert_gateway_answers(gw: SlowGateway) -> None:
    """Liveness, an admin call and an operator-lane call all answer normally."""
    with httpx.Client(base_url=gw.proc.url, timeout=30, trust_env=False) as c:
        r = c.get("/healthz")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
        r = c.post("/admin/registration-tokens", json={"uses": 1}, headers=admin_headers())
        assert r.status_code == 201, r.text
        assert r.json()["token"]
    r = gw.lane("POST", "/target/echo", content=b"x" * 100)
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/api/echo", "size": 100}


@pytest.mark.parametrize(
    ("after_response", "dribble"),
    [
        pytest.param(False, False, id="connects-and-sends-nothing"),
        pytest.param(False, True, id="dribbles-the-first-head"),
        pytest.param(True, False, id="idle-after-a-response"),
        pytest.param(True, True, id="dribbles-the-next-head-on-keep-alive"),
    ],
)
def test_a_head_not_complete_in_time_is_closed(
    slow_gw: SlowGateway, after_response: bool, dribble: bool
) -> None:
    received, waited = slow_client(
        slow_gw.proc.port, after_response=after_response, dribble=dribble
    )
    # not before the timeout (the server's clock starts after our connect / its response)
    assert waited >= HEADER_TIMEOUT * 0.8
    if dribble:
        assert_header_timeout_answer(received)
    else:
        assert received == b""  # nothing was asked: a plain close, as for keep-alive


def test_a_slowloris_flood_is_closed_while_the_gateway_keeps_answering(
    slow_gw: SlowGateway,
) -> None:
    port = slow_gw.proc.port
    idle: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    try:
        with ThreadPoolExecutor(DRIBBLERS) as pool:
            for _ in range(ATTACKERS):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                idle.append(sock)
                sel.register(sock, selectors.EVENT_READ)
            dribblers = [
                # during the flood the dribblers' closes share its bound
                pool.submit(
                    slow_client, port, after_response=False, dribble=True, bound=FLOOD_CLOSE_BOUND
                )
                for _ in range(DRIBBLERS)
            ]
            deadline = time.monotonic() + FLOOD_CLOSE_BOUND
            still_open, rounds = len(idle), 0
            # the gateway answers during the whole flood, until the last connection is closed
            while still_open and time.monotonic() < deadline:
                assert_gateway_answers(slow_gw)
                rounds += 1
                for key, _ in sel.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    assert sock.recv(1024) == b""  # closed without a word: it asked nothing
                    sel.unregister(sock)
                    still_open -= 1
            assert still_open == 0, f"{still_open} of {ATTACKERS} idle connections still open"
            assert rounds >= 1
            for done in dribblers:
                received, waited = done.result()
                assert waited >= HEADER_TIMEOUT * 0.8
                assert_header_timeout_answer(received)
        assert_gateway_answers(slow_gw)
    finally:
        sel.close()
        for sock in idle:
            sock.close()


def _slow_json() -> Iterator[bytes]:
    for part in (b'{"uses"', b": ", b"2", b"}"):
        time.sleep(HEADER_TIMEOUT * 0.6)  # part of the test: a body slower than the timeout
        yield part


def _slow_bytes() -> Iterator[bytes]:
    for _ in range(4):
        time.sleep(HEADER_TIMEOUT * 0.6)  # part of the test: a body slower than the timeout
        yield b"x" * 1000


@pytest.mark.parametrize(
    ("path", "body", "status", "check"),
    [
        pytest.param(
            "/target/echo",
            _slow_bytes,
            200,
            lambda doc: doc == {"path": "/api/echo", "size": 4000},
            id="operator-lane-upload",
        ),
        pytest.param(
            "/admin/registration-tokens",
            _slow_json,
            201,
            lambda doc: doc["uses"] == 2 and bool(doc["token"]),
            id="admin-call",
        ),
    ],
)
def test_a_slow_body_is_not_cut_by_the_header_timeout(
    slow_gw: SlowGateway, path: str, body: Any, status: int, check: Any
) -> None:
    headers = {"Authorization": f"Bearer {slow_gw.token}", "Content-Type": "application/json"}
    if path.startswith("/admin/"):
        headers.update(admin_headers())
    with httpx.Client(base_url=slow_gw.proc.url, timeout=30, trust_env=False) as c:
        r = c.post(path, content=body(), headers=headers)
    assert r.status_code == status, r.text
    assert check(r.json()), r.text


def test_a_websocket_outlives_the_header_timeout(slow_gw: SlowGateway) -> None:
    url = "ws" + slow_gw.proc.url[4:] + "/target/chat"
    headers = {"Authorization": f"Bearer {slow_gw.token}"}
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        end = time.monotonic() + HEADER_TIMEOUT * 2.5
        n = 0
        while time.monotonic() < end or n < 3:
            ws.send(f"ping {n}")
            assert ws.recv(timeout=10) == f"PING {n}"
            n += 1
            time.sleep(HEADER_TIMEOUT / 3)  # part of the test: outlive the header timeout
        ws.send("bye")


def _assert_over_the_cap(r: httpx.Response | tuple[int, dict[str, str], Any]) -> None:
    if isinstance(r, httpx.Response):
        status, headers, body = r.status_code, dict(r.headers), r.json()
    else:
        status, headers, body = r
    assert status == 503
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert headers["retry-after"] == "1"
    assert body["status"] == 503
    assert body["reason"] == "too_many_connections"
    assert str(CAP) in body["detail"]


def test_connections_over_the_cap_are_refused_and_the_others_stay(capped_gw: CoreProcess) -> None:
    held = [socket.create_connection(("127.0.0.1", capped_gw.port), timeout=10) for _ in range(CAP)]
    try:
        # a real client asking over the cap gets a clean 503 (its request is not lost to a RST)
        with httpx.Client(base_url=capped_gw.url, timeout=10, trust_env=False) as c:
            _assert_over_the_cap(c.get("/healthz"))
        # one that says nothing is answered and closed at once, not after the header timeout
        with socket.create_connection(("127.0.0.1", capped_gw.port), timeout=10) as extra:
            started, raw = time.monotonic(), b""
            while chunk := extra.recv(65536):
                raw += chunk
            assert time.monotonic() - started < 5
        _assert_over_the_cap(parse(raw))
        # the connections under the cap are untouched and keep being served
        for sock in held:
            sock.sendall(HEALTHZ)
            status, _, body = parse(read_response(sock))
            assert (status, body) == (200, {"status": "ok"})
    finally:
        for sock in held:
            sock.close()
    # once they are gone, new connections are served again
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(capped_gw.url + "/healthz", timeout=10, trust_env=False)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
