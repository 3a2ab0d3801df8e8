"""The operator lane's HTTP/1.1 client against scripted raw servers on 127.0.0.1.

Each server answers from a script of byte strings, so framing cases (chunked, read until
close, HEAD, interim 1xx, a keep-alive connection closed by the target) are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from support.waiting import eventually_async

from vivified.gateway.operator.exchange import ConnectFailed, UpstreamBroken, UpstreamTimeout
from vivified.gateway.operator.pool import Origin, UpstreamPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The head of one request, plus its body when it declares a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


class Server:
    """Counts connections; `handler(reader, writer, connection_number)` scripts each one."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Origin:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Origin("http", "127.0.0.1", port)

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()


def keep_alive(server_ref: list[Server], answer: bytes = OK) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        while True:
            server_ref[0].requests.append(await read_request(reader))
            writer.write(answer)
            await writer.drain()

    return handler


def pool(**kw: float) -> UpstreamPool:
    return UpstreamPool(
        limit=int(kw.get("limit", 8)),
        connect_timeout=kw.get("connect_timeout", 2.0),
        read_timeout=kw.get("read_timeout", 2.0),
    )


def get(path: str = "/api/x") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nhost: t\r\n\r\n"


async def exchange_body(p: UpstreamPool, origin: Origin, head: bytes, **kw: object) -> bytes:
    conn = await p.request(origin, head, **kw)  # type: ignore[arg-type]
    try:
        return await conn.read_all()
    finally:
        p.release(conn)


async def test_connections_are_kept_alive_and_reused() -> None:
    ref: list[Server] = []
    ref.append(Server(keep_alive(ref)))
    p = pool()
    async with ref[0] as origin:
        for _ in range(20):
            assert await exchange_body(p, origin, get()) == b"ok"
        assert ref[0].connections == 1
        assert len(ref[0].requests) == 20
    await p.close()


async def test_concurrent_requests_respect_the_connection_limit() -> None:
    ref: list[Server] = []
    ref.append(Server(keep_alive(ref)))
    p = pool(limit=3)
    async with ref[0] as origin:
        bodies = await asyncio.gather(*(exchange_body(p, origin, get()) for _ in range(30)))
        assert bodies == [b"ok"] * 30
        assert ref[0].connections <= 3
    await p.close()


async def test_a_reused_connection_closed_by_the_target_is_retried_once_for_bodiless() -> None:
    """The keep-alive race: the target closes an idle connection as our request arrives."""

    async def first_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if n == 1:
            await read_request(reader)  # the second request on connection 1: hang up
            return
        while True:
            await read_request(reader)
            writer.write(OK)
            await writer.drain()

    server = Server(first_answer_then_close)
    p = pool()
    async with server as origin:
        assert await exchange_body(p, origin, get()) == b"ok"
        assert await exchange_body(p, origin, get()) == b"ok"  # retried on a new connection
        assert server.connections == 2
    await p.close()


async def test_a_request_with_a_body_is_not_retried() -> None:
    async def close_on_second(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await reader.read(1)  # the next request's first byte: hang up

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"

    server = Server(close_on_second)
    p = pool()
    async with server as origin:
        assert await exchange_body(p, origin, get()) == b"ok"
        post = b"POST /api/x HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\n"
        with pytest.raises(UpstreamBroken):
            await exchange_body(p, origin, post, body=body())
        assert server.connections == 1
    await p.close()


@pytest.mark.parametrize(
    ("answer", "head_only", "expected", "reusable"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            False,
            b"abcde",
            True,
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-close",
            False,
            b"until-close",
            False,
            id="read-until-close",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            False,
            b"ok",
            False,
            id="connection-close-header",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", True, b"", False, id="head"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n\r\n", False, b"", True, id="no-content"),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            False,
            b"ok",
            True,
            id="interim-100",
        ),
    ],
)
async def test_response_framing(
    answer: bytes, head_only: bool, expected: bytes, reusable: bool
) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if b"connection: close" in answer and b"content-length" not in answer:
            return  # the body runs until the connection closes
        await reader.read(1)

    server = Server(once)
    p = pool()
    async with server as origin:
        conn = await p.request(origin, get(), head_only=head_only)
        assert conn.status in (200, 204)
        assert await conn.read_all() == expected
        assert conn.reusable() is reusable
        p.release(conn)
    await p.close()


async def test_refused_connection_is_connect_failed() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    p = pool()
    with pytest.raises(ConnectFailed):
        await p.request(Origin("http", "127.0.0.1", port), get())
    await p.close()


async def test_silent_target_times_out_and_its_connection_is_not_reused() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        await asyncio.sleep(5)  # part of the test: silent well past the 0.3 s read timeout

    server = Server(silent)
    p = pool(read_timeout=0.3)
    async with server as origin:
        with pytest.raises(UpstreamTimeout):
            await p.request(origin, get())
        # the timed-out connection is closed and its slot freed
        await eventually_async(lambda: p._open == 0, timeout=5, what="the slot freed")
    await p.close()


async def test_garbled_response_is_broken() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await reader.read(1)

    server = Server(garbage)
    p = pool()
    async with server as origin:
        with pytest.raises(UpstreamBroken):
            await p.request(origin, get())
    await p.close()


async def test_request_body_streams_chunked_when_its_length_is_unknown() -> None:
    received: list[bytes] = []

    async def echo_chunked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(OK)
        await writer.drain()
        await reader.read(1)

    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    server = Server(echo_chunked)
    p = pool()
    head = b"POST /api/x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    async with server as origin:
        assert await exchange_body(p, origin, head, body=body(), chunked=True) == b"ok"
    assert received == [b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"]
    await p.close()


def test_origin_parsing_and_host_header() -> None:
    assert Origin.parse("http://127.0.0.1:8080/base").host_header == b"127.0.0.1:8080"
    assert Origin.parse("https://svc.internal").port == 443
    assert Origin.parse("https://svc.internal").host_header == b"svc.internal"
    assert Origin.parse("http://[::1]:81").host_header == b"[::1]:81"
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("ftp://x")
