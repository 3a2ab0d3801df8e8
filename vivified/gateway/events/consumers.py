"""The subscribers' durable JetStream consumers: one per subscriber and ordering lane
(`sub-<id>-l<n>`), shared by every gateway replica.

A new subscriber's consumers are made while its approval is still being answered (`prepare`,
awaited by the snapshot swap within `CONSUMERS_BOUND`), so that an event published once the
answer is out waits in them: they take what is published after they exist
(`DeliverPolicy.NEW`). A consumer belongs to one registration of its subscriber (`pull`), and
the consumers of a subscriber that is gone (unregistered, or subscribed to nothing) are
deleted (`forget`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from vivified.gateway.events import pull
from vivified.gateway.events.pull import LanePull
from vivified.gateway.events.stream import EventStream
from vivified.registry.store.snapshot import PluginView, Snapshot

log = logging.getLogger("vivified.events")
CONSUMERS_BOUND = 2.0  # seconds a swap waits for a new subscriber's consumers


def subscriptions(view: PluginView) -> tuple[str, ...]:
    events = view.manifest.get("events") or {}
    subs = events.get("subscribes") if isinstance(events, dict) else None
    return tuple(subs) if isinstance(subs, list) else ()


def consumer_name(pid: str, lane: int) -> str:
    return f"sub-{pid}-l{lane}"


def is_subscriber(view: PluginView) -> bool:
    """Whether the plugin takes events (active or not): it has or may have consumers."""
    return bool(subscriptions(view) and view.endpoints.get("events"))


class Consumers:
    def __init__(self, stream: EventStream) -> None:
        self._stream = stream
        self._known: dict[str, float] = {}  # subscriber -> registration, at the last `gone`

    def lane(self, js: Any, pid: str, since: float | None, lane: int) -> LanePull:
        """Lane `lane`'s consumer of the subscriber registered at `since` (None: one this
        replica no longer knows of; its consumer is taken as it is)."""
        return LanePull(
            self._stream.client(),
            js,
            stream=self._stream.events,
            durable=consumer_name(pid, lane),
            filter_subject=self._stream.lane_filter(lane),
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                max_ack_pending=1,
                ack_wait=30,
            ),
            since=since,
        )

    async def prepare(self, snap: Snapshot, pids: list[str]) -> None:
        """Make the consumers of these subscribers, within `CONSUMERS_BOUND`; their workers
        make whatever is not made by then (NATS away, say) when they start."""
        try:
            js = await self._stream.js()
            async with asyncio.timeout(CONSUMERS_BOUND):
                await asyncio.gather(
                    *(
                        self.lane(js, pid, snap.plugins[pid].since, lane).ensure()
                        for pid in pids
                        for lane in range(self._stream.lanes)
                    )
                )
        except Exception as exc:
            log.warning("consumers of %s not made yet: %s", ", ".join(pids), type(exc).__name__)

    def gone(self, snap: Snapshot) -> list[tuple[str, float]]:
        """The subscribers (and their registration) known at the last call that `snap` no
        longer has as subscribers: unregistered, registered again, or subscribed to nothing."""
        out = [
            (pid, since)
            for pid, since in self._known.items()
            if (view := snap.plugins.get(pid)) is None
            or view.since != since
            or not is_subscriber(view)
        ]
        self._known = {pid: v.since for pid, v in snap.plugins.items() if is_subscriber(v)}
        return out

    async def forget(self, pid: str, since: float) -> None:
        """Delete a gone subscriber's consumers (those of that registration)."""
        try:
            js = await self._stream.js()
            lanes = [consumer_name(pid, lane) for lane in range(self._stream.lanes)]
            await pull.forget(js, self._stream.events, lanes, since)
        except Exception as exc:  # a new registration of the id replaces them anyway
            log.warning("consumers of unregistered %s not deleted: %s", pid, type(exc).__name__)
