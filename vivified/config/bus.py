"""Change notices between core processes over NATS (`vivified.config.changed`).

The bus is best effort by design: a process that misses a notice (NATS down, a reconnect)
still converges through its periodic snapshot reload, and a reconnect triggers a reload at
once. Nothing on a request path waits for NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger("vivified.bus")

CHANGED = "vivified.config.changed"
# Notice kinds about state outside the snapshot: each has its own reloader (propagation.py).
KEYS_CHANGED = "signing_keys"
EGRESS_CA_CHANGED = "egress_ca"
Handler = Callable[[dict[str, Any]], Awaitable[None]]


def servers(url: str) -> list[str]:
    """`VIVIFIED_NATS_URL` as the server list nats.connect takes: one URL or several,
    comma-separated (the client tries them in turn and learns the rest of the cluster)."""
    return [u.strip() for u in url.split(",") if u.strip()]


class Bus:
    def __init__(self, url: str, *, name: str) -> None:
        self.url = url
        self.name = name
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._nc: Client | None = None
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def client(self) -> Client | None:
        """The live connection (for JetStream), or None while disconnected."""
        nc = self._nc
        return nc if nc is not None and nc.is_connected else None

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def on_change(self, handler: Handler) -> None:
        """`handler(notice)` runs for every notice, and with `{"reason": "reconnected"}`."""
        self._handlers.append(handler)

    def start(self) -> None:
        """Connect in the background (retrying forever); returns at once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._connect_loop())

    async def wait_connected(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.connected:
                return True
            await asyncio.sleep(0.02)
        return self.connected

    async def _connect_loop(self) -> None:
        delay = 0.2
        while not self._closing:
            try:
                nc = await nats.connect(
                    servers(self.url),
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
            except Exception as exc:  # the server is not there yet: keep trying
                log.warning(
                    "NATS connect to %s failed (%s); retrying", self.url, type(exc).__name__
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            await nc.subscribe(CHANGED, cb=self._on_message)
            self._nc = nc
            log.info("connected to NATS at %s", self.url)
            await self._dispatch({"reason": "reconnected"})
            return

    async def _on_error(self, exc: Exception) -> None:
        log.debug("NATS error: %s", type(exc).__name__)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS disconnected; lanes keep serving their last snapshot")

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected; reloading in case a notice was missed")
        await self._dispatch({"reason": "reconnected"})

    async def _on_message(self, msg: Msg) -> None:
        try:
            notice = json.loads(msg.data)
        except ValueError:
            return
        if isinstance(notice, dict):
            await self._dispatch(notice)

    async def _dispatch(self, notice: dict[str, Any]) -> None:
        for handler in self._handlers:
            try:
                await handler(notice)
            except Exception:
                log.exception("change handler failed")

    async def publish_change(self, kind: str, **detail: Any) -> bool:
        """Tell every process to reload; False when NATS is unreachable (the periodic reload
        then carries the change)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        notice = {"kind": kind, "origin": self.origin, "at": time.time(), **detail}
        try:
            await nc.publish(CHANGED, json.dumps(notice).encode())
            await nc.flush(timeout=1)
        except Exception:
            log.warning("could not publish a change notice; the periodic reload will carry it")
            return False
        return True

    async def publish(self, subject: str, payload: dict[str, Any]) -> bool:
        """Best-effort notice on `subject` (e.g. `vivified.health.<id>`)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.publish(subject, json.dumps(payload).encode())
        except Exception:
            return False
        return True

    async def mirror_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        """Mirror committed audit records to `vivified.audit.<lane>` (best effort: the
        database chain is the record; this feeds SIEMs and live views)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        for row in rows:
            with contextlib.suppress(Exception):
                await nc.publish(f"vivified.audit.{row['lane']}", json.dumps(row).encode())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
