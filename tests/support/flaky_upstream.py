"""An upstream plugin that flaps: up (answers), hung (reads, never answers) or down (port closed).

A small raw HTTP/1.1 keep-alive server on a fixed loopback port (support.loopback), so a test
can take it down and bring it back on the same port and can see, from the server's side, every
connection a client still holds open (`open_connections`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from support.loopback import LoopbackServer

UP, HUNG, DOWN = "up", "hung", "down"


class FlakyUpstream:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.mode = DOWN
        self.served = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._net = LoopbackServer(self._serve, port)

    @property
    def port(self) -> int:
        return self._net.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._writers)

    def set_mode(self, mode: str) -> None:
        """`up`/`hung` listen on the port; `down` closes it and every connection (refused)."""
        self._net.call(self._set_mode(mode))

    async def _set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == DOWN:
            await self._net.close_port()
            self._hang_up()
        else:
            await self._net.open_port()

    def _hang_up(self) -> None:
        for w in list(self._writers):
            w.close()  # its handler then reads the end of the connection and returns

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip() or 0)
                if length:
                    await reader.readexactly(length)
                if self.mode == HUNG:
                    await reader.read()  # never answers; returns when the client hangs up
                    return
                if self.mode != UP:
                    return
                body = b'{"ok":true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                self.served += 1
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)

    def close(self) -> None:
        self.mode = DOWN
        self._net.close(end=self._hang_up)


@contextmanager
def flaky_upstream() -> Iterator[FlakyUpstream]:
    up = FlakyUpstream()
    try:
        up.set_mode(UP)
        yield up
    finally:
        up.close()
