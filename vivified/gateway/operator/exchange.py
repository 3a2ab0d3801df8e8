"""One keep-alive connection of the operator lane's HTTP/1.1 client, and its exchange.

An `Exchange` is an asyncio protocol that carries one request/response at a time: it writes
a request head and streams a body, and parses the response with `httptools` (llhttp, which
uvicorn already uses to parse the caller's side), with flow control and a read timeout. The
pool that opens and reuses these connections is `vivified.gateway.operator.pool`.

Errors are three kinds, which the lane maps to status codes: `ConnectFailed` (502),
`UpstreamTimeout` (504) and `UpstreamBroken` (502: the target cut or garbled the exchange;
`UpstreamBadResponse`, reason `upstream_bad_response`, when the response itself is refused).

A response head is bounded and checked before anything of it is forwarded: at most
`MAX_HEADERS` fields and `MAX_HEAD_BYTES` bytes (interim 1xx heads included, at most
`MAX_INTERIM` of them), a status from 100 to 599, HTTP/1.0 or 1.1. llhttp (strict mode)
refuses bad framing itself: a duplicate or conflicting Content-Length, Content-Length with
Transfer-Encoding, obs-fold, a bare LF, control characters; every such refusal is an
`UpstreamBadResponse` too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import httptools

if TYPE_CHECKING:
    from vivified.gateway.operator.pool import Origin, UpstreamPool

HIGH_WATER = 256 * 1024  # buffered response bytes that pause reading from the target
LOW_WATER = 64 * 1024
MAX_HEADERS = 100  # header fields of one response head
MAX_HEAD_BYTES = 64 * 1024  # bytes of the response head(s) before the body
MAX_INTERIM = 8  # interim (1xx) responses before the final one
HTTP_VERSIONS = ("1.1", "1.0")


class UpstreamError(Exception):
    """The target could not be reached or broke off the exchange."""


class ConnectFailed(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamBroken(UpstreamError):
    pass


class UpstreamBadResponse(UpstreamBroken):
    """The target's response is malformed or over a bound; nothing of it is forwarded."""

    reason = "upstream_bad_response"


class _BadHead(Exception):
    """Raised inside an llhttp callback; surfaces as the parser error's context."""


class Exchange(asyncio.Protocol):
    """One connection to a target; carries one request/response exchange at a time."""

    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.counted = False  # holds one of the pool's slots until connection_lost
        self.idle_since = 0.0
        self._can_write = True
        self._drain: asyncio.Future[None] | None = None
        self.reset(head_only=False)

    def reset(self, *, head_only: bool) -> None:
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: BaseException | None = None
        self._head_bytes = 0  # head bytes received so far (while the head is incomplete)
        self._field_bytes = 0  # bytes of the header fields parsed so far
        self._interims = 0
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._interim = False
        self._waiter: asyncio.Future[None] | None = None
        self.sender: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.counted = True

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.complete:  # bytes after a complete response: the connection is unusable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            why = exc.__context__ if isinstance(exc.__context__, _BadHead) else exc
            self._fail(UpstreamBadResponse(f"bad response from the target: {why}"))
            self.close()
            return
        if not self.headers_done:  # a head that never ends is refused at the bound too
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(UpstreamBadResponse(f"response head over {MAX_HEAD_BYTES} bytes"))
                self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.counted:
            self.counted = False
            self.pool.forget(self)
        if not self.complete:
            if self.headers_done and self._reads_until_eof():
                self.on_message_complete()
            else:
                self._fail(UpstreamBroken("the target closed the connection"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(UpstreamBroken("the target closed the connection"))

    def pause_writing(self) -> None:
        self._can_write = False

    def resume_writing(self) -> None:
        self._can_write = True
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- llhttp callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value) + 4
        if len(self.headers) >= MAX_HEADERS:
            raise _BadHead(f"more than {MAX_HEADERS} header fields")
        if self._field_bytes > MAX_HEAD_BYTES:
            raise _BadHead(f"response head over {MAX_HEAD_BYTES} bytes")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if not 100 <= status <= 599:
            raise _BadHead("status code out of range")
        if self.parser.get_http_version() not in HTTP_VERSIONS:
            raise _BadHead("not an HTTP/1.x response")
        if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): wait for the final
            self._interims += 1
            if self._interims > MAX_INTERIM:
                raise _BadHead(f"more than {MAX_INTERIM} interim responses")
            self._interim = True
            self.headers = []
            return
        self.status = status
        self.headers_done = True
        for name, value in self.headers:
            if name.lower() == b"content-length" and value.isdigit():
                self.content_length = int(value)
        if self.head_only:  # a HEAD response has no body, whatever its headers say
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it after the call
        self._wake()

    # -- the exchange -----------------------------------------------------------------------

    def _reads_until_eof(self) -> bool:
        return self.content_length is None and not any(
            n.lower() == b"transfer-encoding" for n, _ in self.headers
        )

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _timed_out(self) -> None:
        self._fail(UpstreamTimeout("the target did not answer in time"))
        self.close()

    async def wait(self) -> None:
        """Until the target sends more (or fails); UpstreamTimeout after the read timeout."""
        if self.error is not None:
            raise self.error
        self._waiter = waiter = self.loop.create_future()
        timer = self.loop.call_later(self.pool.read_timeout, self._timed_out)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def read_chunk(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        while not self._body:
            if self.complete:
                return b""
            await self.wait()
        chunk = self._body.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def read_all(self) -> bytes:
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def write(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise UpstreamBroken("the target closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise UpstreamBroken("the target closed the connection")
        if not self._can_write:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    async def send_body(self, body: AsyncIterator[bytes], chunked: bool) -> None:
        async for chunk in body:
            if chunked:
                self.write(b"%X\r\n%b\r\n" % (len(chunk), chunk))
            else:
                self.write(chunk)
            await self.drain()
        if chunked:
            self.write(b"0\r\n\r\n")

    def reusable(self) -> bool:
        """Only a cleanly finished exchange whose request body was fully sent is reused."""
        sent = self.sender is None or (
            self.sender.done() and not self.sender.cancelled() and self.sender.exception() is None
        )
        return (
            sent
            and self.complete
            and not self.closed
            and not self.head_only  # llhttp still expects the body the HEAD answer announced
            and self.error is None
            and self.keep_alive
        )

    def sender_done(self, task: asyncio.Task[None]) -> None:
        """A failed request body (too large, caller gone) ends the exchange with its error."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._fail(exc)
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
