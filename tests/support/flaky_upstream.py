"""An upstream plugin that flaps: up (answers), hung (reads, never answers) or down (port closed).

A small raw HTTP/1.1 keep-alive server on a fixed loopback port, in a thread with its own
event loop, so a test can take it down and bring it back on the same port and can see, from
the server's side, every connection a client still holds open (`open_connections`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

UP, HUNG, DOWN = "up", "hung", "down"


class FlakyUpstream:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.mode = DOWN
        self.served = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._writers)

    def _call(self, coro: object, timeout: float = 10) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def set_mode(self, mode: str) -> None:
        """`up`/`hung` listen on the port; `down` closes it and every connection (refused)."""
        self._call(self._set_mode(mode))

    async def _set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == DOWN:
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                w.close()
            return
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

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
            writer.close()

    def close(self) -> None:
        self.set_mode(DOWN)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def flaky_upstream() -> Iterator[FlakyUpstream]:
    up = FlakyUpstream()
    try:
        up.set_mode(UP)
        yield up
    finally:
        up.close()
