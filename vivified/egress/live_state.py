"""The live state every egress addon shares: the current snapshot and the audit trail.

One `EgressState` is made by the launcher and handed to each addon's constructor; nothing else
is shared between addons (per-flow facts travel in `flow.metadata`, see `flow_state`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from mitmproxy import connection, http

from vivified.egress.filters import CountingStream, LimitedStream, ReplacementStream
from vivified.egress.flow_state import AUDITED, outcome
from vivified.egress.records import Outcome, build_event
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.store.snapshot import Snapshot

CloseClient = Callable[[connection.Client, bool], Any]
"""`live_connections.LiveConnections.close_client(client, abort)`."""


class SnapshotSource(Protocol):
    """`vivified.registry.store.snapshot.SnapshotHolder`: plugins, allowlists, egress settings."""

    @property
    def current(self) -> Snapshot: ...

    async def confirm(self) -> Snapshot: ...


class AuditSink(Protocol):
    """`vivified.registry.audit.writer.AuditWriter`, as far as the proxy uses it."""

    def record_nowait(self, event: AuditEvent) -> bool: ...

    async def record(self, event: AuditEvent) -> None: ...


class AuditTrail:
    """Writes each outcome once, and never drops one; what waits for the writer is bounded.

    A record goes straight into the writer's queue when it has room. Otherwise it joins
    `backlog`, which one task (never one per record) feeds into the queue as it drains, in
    order. New work is held back while the backlog is at `limit`: `PluginAuth` awaits `room()`
    before it handles a CONNECT or request, so the backlog holds at most `limit` records plus
    those of the flows already admitted (each writes one), however slow the store is."""

    def __init__(self, sink: AuditSink, *, limit: int = 1000) -> None:
        self._sink = sink
        self.limit = limit
        self._backlog: deque[AuditEvent] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._room.set()
        self.observe: Any = None  # metrics: called with each outcome as it is recorded

    @property
    def backlog(self) -> int:
        """Records waiting for room in the writer's queue (at most `limit` + admitted flows)."""
        return len(self._backlog)

    @property
    def tasks(self) -> int:
        """Tasks this trail runs now: 0 or 1, whatever the backlog."""
        return 0 if self._drainer is None or self._drainer.done() else 1

    @property
    def saturated(self) -> bool:
        """Whether new work must wait for `room()` now (checked before awaiting it)."""
        return len(self._backlog) >= self.limit

    async def room(self) -> None:
        """Wait while the backlog is at its limit (back-pressure on new flows)."""
        while self.saturated:
            self._room.clear()
            await self._room.wait()

    def record(self, o: Outcome, meta: MutableMapping[Any, Any] | None = None) -> None:
        """Write `o`; with the flow's metadata, only if that flow was not recorded yet."""
        if meta is not None:
            if meta.get(AUDITED):
                return
            meta[AUDITED] = True
        if self.observe is not None:
            self.observe(o)
        event = build_event(o, time.time())
        if not self._backlog and self._sink.record_nowait(event):
            return
        self._backlog.append(event)  # full queue: wait rather than drop, in order
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(
                self._drain(), name="egress-audit-backlog"
            )

    async def _drain(self) -> None:
        while self._backlog:
            await self._sink.record(self._backlog[0])  # waits for room in the writer's queue
            self._backlog.popleft()
            if len(self._backlog) < self.limit:
                self._room.set()

    def finish(self, flow: http.HTTPFlow) -> None:
        """Record a flow that went upstream: bytes each way and the final status."""
        o = outcome(flow)
        if o is None:
            return
        if isinstance(flow.request.stream, CountingStream):
            o.bytes_out = flow.request.stream.total
        elif flow.request.raw_content:
            o.bytes_out = len(flow.request.raw_content)
        stream = flow.response.stream if flow.response is not None else None
        if isinstance(stream, LimitedStream | ReplacementStream):
            o.bytes_in = stream.total
        elif flow.response is not None and flow.response.raw_content:
            o.bytes_in = len(flow.response.raw_content)
        if flow.response is not None and not o.status:
            o.status = flow.response.status_code
        self.record(o, flow.metadata)


@dataclass(frozen=True)
class EgressState:
    """The one object of shared live state, passed explicitly to every addon."""

    snapshots: SnapshotSource
    audit: AuditTrail

    @property
    def current(self) -> Snapshot:
        """The snapshot now (read it once per decision: a reload swaps it whole)."""
        return self.snapshots.current

    async def confirm(self) -> Snapshot:
        """The snapshot a refusal may stand on: a fresh one when the registry is ahead of the
        current one (`vivified.registry.store.revision`)."""
        return await self.snapshots.confirm()
