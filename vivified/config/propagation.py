"""Wiring a process's shared runtime state to the change bus.

A committed change reloads the local snapshot and publishes a notice; every other process
(gateway or egress replica) reloads on the notice. Notices from this process are skipped
(it has already reloaded). Without NATS the periodic reload is the only path.

State outside the snapshot (the signing keys, the egress CA) travels the same way: whoever
changes it publishes a notice of its kind (`bus.KEYS_CHANGED`, `bus.EGRESS_CA_CHANGED`),
and a `Follower` in every process reloads it on that notice, after a reconnect (a notice may
have been missed) and on its own safety-net timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vivified.config.bus import EGRESS_CA_CHANGED, KEYS_CHANGED, Bus
from vivified.config.settings import Settings
from vivified.registry.store.snapshot import SnapshotHolder

log = logging.getLogger("vivified.propagation")
NOT_SNAPSHOT = frozenset({KEYS_CHANGED, EGRESS_CA_CHANGED})


def connect_snapshot(settings: Settings, holder: SnapshotHolder, name: str) -> Bus | None:
    """Start a bus for `holder` when `VIVIFIED_NATS_URL` is set; returns it (or None)."""
    if not settings.nats_url:
        return None
    bus = Bus(settings.nats_url, name=name)

    async def on_change(notice: dict[str, Any]) -> None:
        if notice.get("origin") == bus.origin or notice.get("kind") in NOT_SNAPSHOT:
            return
        try:
            await holder.reload()
        except Exception:  # the last good snapshot stays; the timer retries
            log.exception("reload after a change notice failed")

    async def publish(kind: str) -> bool:
        return await bus.publish_change(kind)

    bus.on_change(on_change)
    holder.set_publisher(publish)
    bus.start()
    return bus


class Follower:
    """Runs `reload()` on every notice of `kind`, after a bus reconnect, and every `interval`
    seconds. Reloads never overlap; a failed one leaves the state in memory as it was."""

    def __init__(
        self,
        what: str,
        kind: str,
        reload: Callable[[], Awaitable[object]],
        interval: float,
        bus: Bus | None,
    ) -> None:
        self.what = what
        self.kind = kind
        self._reload = reload
        self._interval = interval
        self._bus = bus
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._bus is not None:
            self._bus.on_change(self._on_notice)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.what)

    async def _on_notice(self, notice: dict[str, Any]) -> None:
        if notice.get("kind") == self.kind or notice.get("reason") == "reconnected":
            await self.reload()

    async def reload(self) -> None:
        async with self._lock:
            try:
                await self._reload()
            except Exception:
                log.exception("reloading the %s failed; keeping the ones in memory", self.what)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.reload()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


async def announce(settings: Settings, kind: str, *, within: float = 3.0) -> bool:
    """Publish one change notice from a short-lived process (the CLI); False without NATS
    (the replicas' safety-net reload then carries the change)."""
    if not settings.nats_url:
        return False
    bus = Bus(settings.nats_url, name="vivified-cli")
    bus.start()
    try:
        return await bus.wait_connected(within) and await bus.publish_change(kind)
    finally:
        await bus.close()
