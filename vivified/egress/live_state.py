"""The live state every egress addon shares: the current snapshot and the audit trail.

One `EgressState` is made by the launcher and handed to each addon's constructor; nothing else
is shared between addons (per-flow facts travel in `flow.metadata`, see `flow_state`).
"""

from __future__ import annotations

import asyncio
import time
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


class AuditSink(Protocol):
    """`vivified.registry.audit.writer.AuditWriter`, as far as the proxy uses it."""

    def record_nowait(self, event: AuditEvent) -> bool: ...

    async def record(self, event: AuditEvent) -> None: ...


class AuditTrail:
    """Writes each outcome once, and never drops one (a full queue is waited for)."""

    def __init__(self, sink: AuditSink) -> None:
        self._sink = sink
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, o: Outcome, meta: MutableMapping[Any, Any] | None = None) -> None:
        """Write `o`; with the flow's metadata, only if that flow was not recorded yet."""
        if meta is not None:
            if meta.get(AUDITED):
                return
            meta[AUDITED] = True
        event = build_event(o, time.time())
        if not self._sink.record_nowait(event):  # full queue: wait rather than drop
            task = asyncio.get_running_loop().create_task(self._sink.record(event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

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
