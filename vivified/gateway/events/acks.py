"""JetStream publishes acknowledged through one inbox, with a future per message.

`JetStreamContext.publish` is a NATS request: per event a NUID, two random bytes from the
kernel, a done-callback, `asyncio.wait_for` and a `PubAck` dataclass built from the ack.
Here one wildcard inbox subscription (`<inbox>.*`) answers every publish of a connection:
each message gets the next number as its reply token and a future that the ack resolves, so
any number of publishes are in flight at once and each request only waits for its own ack
(the same wire protocol: a publish with a reply subject, the stream's JSON ack back).
Durability is unchanged: `publish` returns only once JetStream has stored the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

NO_RESPONDERS = "503"


class PublishRefused(Exception):
    """JetStream did not store the message: no stream answers, or it answered an error."""


class PublishAcks:
    """Publishes on one connection `nc`, each waiting at most `ack_wait` seconds for its ack."""

    def __init__(self, nc: Client, ack_wait: float = 2.0) -> None:
        self._nc = nc
        self._ack_wait = ack_wait
        self._prefix = nc.new_inbox() + "."
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count()
        self._sub: Any = None

    def on(self, nc: Client) -> bool:
        """True when this publishes on `nc` (its inbox survives reconnects of `nc`)."""
        return self._nc is nc

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._arrived)

    async def _arrived(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Store `payload` on `subject`; returns JetStream's ack (`{"stream", "seq",
        "duplicate"?}`). PublishRefused when it was not stored, TimeoutError when no ack came
        within `ack_wait` seconds (the message may or may not be stored: the caller retries
        with the same message id, which JetStream deduplicates)."""
        token = str(next(self._tokens))
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            async with asyncio.timeout(self._ack_wait):
                msg = await future
        finally:
            self._pending.pop(token, None)
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            raise PublishRefused("no stream takes this subject")
        ack: dict[str, Any] = json.loads(msg.data)
        if "error" in ack:
            raise PublishRefused(str(ack["error"].get("description", "error"))[:200])
        return ack

    async def close(self) -> None:
        """Stop; a publish still waiting for its ack fails with PublishRefused."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PublishRefused("the connection was replaced"))
        self._pending.clear()
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(Exception):  # the connection is gone: nothing to undo
                await sub.unsubscribe()
