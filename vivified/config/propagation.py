"""Wiring a process's registry snapshot to the change bus.

A committed change reloads the local snapshot and publishes a notice; every other process
(gateway or egress replica) reloads on the notice. Notices from this process are skipped
(it has already reloaded). Without NATS the periodic reload is the only path.
"""

from __future__ import annotations

import logging
from typing import Any

from vivified.config.bus import Bus
from vivified.config.settings import Settings
from vivified.registry.store.snapshot import SnapshotHolder

log = logging.getLogger("vivified.propagation")


def connect_snapshot(settings: Settings, holder: SnapshotHolder, name: str) -> Bus | None:
    """Start a bus for `holder` when `VIVIFIED_NATS_URL` is set; returns it (or None)."""
    if not settings.nats_url:
        return None
    bus = Bus(settings.nats_url, name=name)

    async def on_change(notice: dict[str, Any]) -> None:
        if notice.get("origin") == bus.origin:
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
