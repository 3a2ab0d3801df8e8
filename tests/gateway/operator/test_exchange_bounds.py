"""Upstream responses are bounded and well-framed, or refused: 502 `upstream_bad_response`.

Pool level: scripted raw servers answer each malformed or oversized response head, and the
pool raises `UpstreamBadResponse` naming why. Lane level: a real gateway forwards to a raw
socket target; the caller gets the problem document, never a byte of the bad response.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.manifests import simple
from support.procs import CoreProcess, register, registration_token

from vivified.gateway.operator.exchange import MAX_HEAD_BYTES, MAX_HEADERS, UpstreamBadResponse
from vivified.gateway.operator.pool import Origin, UpstreamPool

MARK = b"leaked-marker"
MANY = b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
BIG = b"x-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n"

BAD = [
    pytest.param(
        b"HTTP/1.1 200 OK\r\n" + MANY + b"content-length: 0\r\n\r\n", id="too-many-headers"
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\n" + BIG + b"content-length: 0\r\n\r\n", id="head-too-large"),
    pytest.param(b"HTTP/1.1 200 OK\r\n" + BIG[:-2], id="head-too-large-unfinished"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok", id="duplicate-cl"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\nok", id="conflicting-cl"
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok", id="cl-list"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        id="cl-with-te",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nx-a: b\r\n  folded\r\ncontent-length: 2\r\n\r\nok", id="obs-fold"
    ),
    pytest.param(b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok", id="bare-lf-status-line"),
    pytest.param(b"HTTP/1.1 200 OK\r\nx: y\ncontent-length: 2\r\n\r\nok", id="bare-lf-header"),
    pytest.param(b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok", id="status-four-digits"),
    pytest.param(b"HTTP/1.1 999 OK\r\ncontent-length: 2\r\n\r\nok", id="status-out-of-range"),
    pytest.param(b"HTTP/2.0 200 OK\r\ncontent-length: 2\r\n\r\nok", id="not-http-1"),
    pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", id="not-http-at-all"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" * 20, id="endless-interim-responses"),
    pytest.param(b"HTTP/1.1 200 OK\r\nx: a\x00b\r\ncontent-length: 2\r\n\r\nok", id="nul-in-value"),
]


def leaky(answer: bytes) -> bytes:
    """`answer` with a marker the caller must never see."""
    return answer.replace(b"\r\n\r\n", b"\r\nx-leak: " + MARK + b"\r\n\r\n", 1) + MARK


class RawTarget:
    """A TCP server on 127.0.0.1 answering each request with `answers[path]`, raw."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.closing = False

    def _serve(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                path = data.split(b" ", 2)[1].decode("latin-1").split("?")[0]
                conn.sendall(self.answers.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n"))
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)
            except OSError:
                return

    def __enter__(self) -> RawTarget:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.closing = True
        self.sock.close()


async def fetch(pool: UpstreamPool, port: int) -> bytes:
    exchange = await pool.request(
        Origin("http", "127.0.0.1", port), b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"
    )
    try:
        return await exchange.read_all()
    finally:
        pool.release(exchange)


@pytest.mark.parametrize("answer", BAD)
async def test_the_pool_refuses_a_malformed_response_head(answer: bytes) -> None:
    with RawTarget({"/x": leaky(answer)}) as target:
        pool = UpstreamPool(limit=4, connect_timeout=2, read_timeout=2)
        try:
            with pytest.raises(UpstreamBadResponse) as caught:
                await fetch(pool, target.port)  # even a bad body must not come out as data
            assert caught.value.reason == "upstream_bad_response"
            assert MARK not in str(caught.value).encode()
        finally:
            await pool.close()


GOOD = [
    pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok", id="plain"),
    pytest.param(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok", id="http-1.0"),
    pytest.param(b"HTTP/1.1 200\r\ncontent-length: 2\r\n\r\nok", b"ok", id="no-reason-phrase"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_HEADERS - 1))
        + b"content-length: 2\r\n\r\nok",
        b"ok",
        id="exactly-the-header-cap",
    ),
    pytest.param(
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2"
        b"\r\n\r\nok",
        b"ok",
        id="one-interim",
    ),
]


@pytest.mark.parametrize(("answer", "body"), GOOD)
async def test_well_formed_responses_within_the_caps_still_pass(answer: bytes, body: bytes) -> None:
    with RawTarget({"/x": answer}) as target:
        pool = UpstreamPool(limit=4, connect_timeout=2, read_timeout=2)
        try:
            exchange = await pool.request(
                Origin("http", "127.0.0.1", target.port), b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"
            )
            assert exchange.status == 200
            assert await exchange.read_all() == body
            pool.release(exchange)
        finally:
            await pool.close()


# -- through a real gateway ------------------------------------------------------------------

HEALTHY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


@pytest.fixture(scope="module")
def raw_lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreProcess, str]]:
    answers = {"/health": HEALTHY}
    for case in BAD:
        (answer,) = case.values
        answers[f"/api/items/{case.id}"] = leaky(answer)  # type: ignore[arg-type]
    env = {"VIVIFIED_CIRCUIT_THRESHOLD": "1000", "VIVIFIED_UPSTREAM_TIMEOUT": "3"}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("raw-lane")), env).start()
    try:
        with (
            RawTarget(answers) as target,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            url = f"http://127.0.0.1:{target.port}"
            endpoints = {"health": "/health", "items": "/api/items/{id}"}
            assert (
                register(
                    c, simple("raw", base_url=url, endpoints=endpoints), registration_token(c)
                ).status_code
                == 201
            )
            r = register(c, simple("caller", dependencies=["raw"]), registration_token(c))
            assert r.status_code == 201, r.text
            yield gw, r.json()["token"]
    finally:
        gw.stop()


@pytest.mark.parametrize("case", [p.id for p in BAD])
def test_the_lane_answers_502_and_forwards_nothing_of_a_bad_response(
    raw_lane: tuple[CoreProcess, str], case: str
) -> None:
    gw, token = raw_lane
    with httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c:
        r = c.get(f"/raw/items/{case}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["reason"] == "upstream_bad_response"
    assert MARK not in r.content
    assert "x-leak" not in r.headers
