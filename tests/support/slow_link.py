"""A slow network link on loopback: a TCP relay that holds every byte, either way, for `delay`
seconds (order kept), so each round trip through it takes twice that much longer.

It runs on a support.loopback server; clients connect to the port it yields instead of the
server's. Used to make "before it answers" observable: what a process does over the link in
the background finishes at least one delay after what it already awaited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from support.loopback import LoopbackServer

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, spawn: Spawn
) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()

    sender = spawn(deliver())
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

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(host, port)
        except OSError:
            return
        pumps = [
            link.spawn(_pump(client_r, server_w, delay, link.spawn)),
            link.spawn(_pump(server_r, client_w, delay, link.spawn)),
        ]
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            server_w.close()

    def cut() -> None:
        for task in list(link.tasks):
            task.cancel()

    link = LoopbackServer(relay)
    try:
        link.call(link.open_port())
        yield link.port
    finally:
        link.close(end=cut)
