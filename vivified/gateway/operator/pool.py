"""The operator lane's HTTP/1.1 client: pooled keep-alive connections to each origin.

Why not a general client: the lane forwards bytes it has already checked, so it needs a
narrow subset — write a request head, stream a body, read a status, headers and a body with
flow control, time out. Measured under load, aiohttp's client machinery (URL and multidict
objects, request/response objects, a writer per request) was ~30 % of the gateway's CPU per
call; this client does the same job with one protocol per connection
(`vivified.gateway.operator.exchange`, which also names the errors and the response bounds).
WebSocket upgrades still go through aiohttp (`operator_ws`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from vivified.gateway.operator.exchange import (
    ConnectFailed,
    Exchange,
    UpstreamBroken,
    UpstreamTimeout,
)


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port)

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == default else f"{host}:{self.port}").encode("idna")


# Characters left as they are in a request target; everything else is percent-encoded, so no
# byte of a path can end the request line.
PATH_SAFE = "/-._~!$&'()*+,;=:@%"


def encode_path(path: str) -> bytes:
    return quote(path, safe=PATH_SAFE).encode("ascii")


@functools.cache  # one entry per registered base URL; this runs on every request
def base_path(base_url: str) -> bytes:
    """The path part of a plugin's base URL, without its trailing slash, ready for the wire."""
    return encode_path(urlsplit(base_url).path.rstrip("/"))


class UpstreamPool:
    """Keep-alive connections per origin, at most `limit` open in all."""

    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        keepalive: float = 4.0,
    ) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        # Below uvicorn's default 5 s keep-alive, so an idle connection is rarely reused
        # just as the target closes it (that race is also retried once, see `request`).
        self.keepalive = keepalive
        self._idle: dict[Origin, list[Exchange]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._origins: dict[str, Origin] = {}
        self._tls: ssl.SSLContext | None = None

    def origin(self, base_url: str) -> Origin:
        found = self._origins.get(base_url)
        if found is None:
            found = self._origins[base_url] = Origin.parse(base_url)
        return found

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: AsyncIterator[bytes] | None = None,
        *,
        chunked: bool = False,
        head_only: bool = False,
    ) -> Exchange:
        """Send `head` (and stream `body`), return once the response head has arrived.
        The caller reads the body from the exchange and must `release` it."""
        for attempt in (1, 2):
            conn, reused = await self._acquire(origin)
            conn.reset(head_only=head_only)
            try:
                conn.write(head)
                if body is not None:
                    conn.sender = asyncio.get_running_loop().create_task(
                        conn.send_body(body, chunked)
                    )
                    conn.sender.add_done_callback(conn.sender_done)
                while not conn.headers_done:  # inlined: one coroutine layer less per resume
                    await conn.wait()
                return conn
            except UpstreamBroken:
                self.release(conn)
                # A reused connection the target closed just before our request: nothing
                # was read or sent from the body, so sending the request again is safe.
                if attempt == 1 and reused and body is None and not conn.got_bytes:
                    continue
                raise
            except BaseException:
                self.release(conn)
                raise
        raise AssertionError("unreachable")

    def release(self, conn: Exchange) -> None:
        """Back to the pool if the exchange ended cleanly, else closed."""
        if conn.sender is not None and not conn.sender.done():
            conn.sender.cancel()
        if conn.reusable():
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
            self._wake_one()
        else:
            conn.close()

    def forget(self, conn: Exchange) -> None:
        """A connection closed (by either side): it no longer counts against the limit."""
        self._open -= 1
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _acquire(self, origin: Origin) -> tuple[Exchange, bool]:
        while True:
            idle = self._idle.get(origin)
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self.keepalive:
                    return conn, True
                conn.close()
            if self._open < self.limit:
                break
            self._evict_oldest()  # its slot frees when the close completes
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self._open += 1  # reserved; from connection_made on, connection_lost gives it back
        made: list[Exchange] = []
        try:
            conn = await self._connect(origin, made)
        except BaseException:
            if not (made and made[0].transport is not None):  # else connection_lost frees it
                self._open -= 1
                self._wake_one()
            raise
        return conn, False

    def _evict_oldest(self) -> None:
        """Close the oldest idle connection to any origin to make room for another."""
        oldest: Exchange | None = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is not None:
            self._idle[oldest.origin].remove(oldest)
            oldest.close()

    async def _connect(self, origin: Origin, made: list[Exchange]) -> Exchange:
        loop = asyncio.get_running_loop()

        def factory() -> Exchange:
            made.append(Exchange(self, origin))
            return made[-1]

        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    factory,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"no connection to {origin.host}:{origin.port} in time") from exc
        except OSError as exc:
            raise ConnectFailed(f"{origin.host}:{origin.port}: {exc.strerror or exc}") from exc
        return conn

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # let the transports finish closing
