"""A raw TCP server on 127.0.0.1 with its own event loop in a thread, that closes without leaks.

For the test rigs that speak bytes rather than ASGI (the flaky upstream, the slow link): a test
can open and close the port at will, and closing it or the whole server leaves no socket open.

asyncio 3.11 leaks a connection accepted in the moment its server closes: it builds the
transport in a task of its own, which fails on the closed server and leaves the socket open,
to surface later as an unclosed-transport warning in whatever test runs then. So `close_port`
first stops accepting, lets asyncio hand what it accepted to a handler, and only then closes
the port. That needs every task a handler starts to be known: start them with `spawn`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SETTLE_SECONDS = 5.0


class LoopbackServer:
    def __init__(self, handler: Handler, port: int = 0) -> None:
        self.port = port  # 0 until the port first opens, unless fixed
        self.tasks: set[asyncio.Task[Any]] = set()  # the handlers and every task they spawned
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run `coro` on the server's loop, from another thread, and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start a task on the server's loop that closing waits for (from the loop only)."""
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def open_port(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def close_port(self) -> None:
        """Refuse new connections; the ones already accepted go on, each with its handler."""
        server, self._server = self._server, None
        if server is None:
            return
        for sock in server.sockets:
            self._loop.remove_reader(sock.fileno())
        me = asyncio.current_task()
        await settled(lambda: asyncio.all_tasks() - self.tasks - {me})
        server.close()

    def close(self, end: Callable[[], object]) -> None:
        """Close the port, call `end` (on the loop; it must make every handler return), wait
        for every handler and spawned task to finish, then stop the loop."""

        async def shutdown() -> None:
            await self.close_port()
            end()
            await settled(lambda: self.tasks)
            await asyncio.sleep(0)  # the transports' own close callbacks run before the stop

        try:
            self.call(shutdown(), timeout=SETTLE_SECONDS * 3)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self.tasks.add(me)
        try:
            await self._handler(reader, writer)
        except asyncio.CancelledError:
            pass  # cancelled by an `end` that closes this way: asyncio would log it as an error
        finally:
            self.tasks.discard(me)
            writer.close()


async def settled(pending: Callable[[], Collection[object]]) -> None:
    """Poll, on the loop, until `pending()` is empty, for at most SETTLE_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    while pending() and loop.time() < deadline:
        await asyncio.sleep(0.001)
