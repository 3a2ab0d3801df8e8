"""A slow network link on loopback: a TCP relay that holds every byte, either way, for `delay`
seconds (order kept), so each round trip through it takes twice that much longer.

It runs in a thread with its own event loop; clients connect to the port it yields instead of
the server's. Used to make "before it answers" observable: what a process does over the link in
the background finishes at least one delay after what it already awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, chunk))
        queue.put_nowait((0.0, b""))
        await sender  # what is on its way still arrives, then the link closes
    finally:
        sender.cancel()
        writer.close()


@contextmanager
def slow_link(host: str, port: int, delay: float) -> Iterator[int]:
    """Relay 127.0.0.1:<yielded port> to `host:port`, `delay` seconds late each way."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ports: list[int] = []

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        with contextlib.suppress(Exception):
            await asyncio.gather(_pump(client_r, server_w, delay), _pump(server_r, client_w, delay))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ports.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await server.serve_forever()

    thread = threading.Thread(target=lambda: _run(loop, serve()), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the slow link did not start")
    try:
        yield ports[0]
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(10)


def _run(loop: asyncio.AbstractEventLoop, main: object) -> None:
    asyncio.set_event_loop(loop)
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(main)  # type: ignore[arg-type]
    rest = asyncio.all_tasks(loop)  # the relays cancelled with it: let them close their sockets
    loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
