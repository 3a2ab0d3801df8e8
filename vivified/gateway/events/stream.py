"""JetStream for the event lane: the event stream, the dead-letter stream, publishing.

Events are CloudEvents 1.0 JSON on `vivified.events.<Type>.<lane>`. Deduplication is per
publisher: the JetStream message id is the event's `source` (core sets it to the publishing
plugin) together with its id (`dedup_id`), so a publisher repeating an id within the duplicate
window is acknowledged as a duplicate and stored once, while another publisher choosing the
same id publishes a separate event (it cannot suppress the first one's events). The envelope
keeps the publisher's own id; `source` tells publishers apart (CloudEvents: source + id is
unique). The lane (0 … partitions-1) is a hash of the event's ordering key — its CloudEvents
`subject` when it has one (all events about one entity, of any type, stay in order), else its
type — so delivery can run in parallel across lanes and stay in order within each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from vivified.config.bus import Bus
from vivified.config.settings import Settings

DUPLICATE_WINDOW = 600.0  # seconds: a re-published id inside it is stored once
CORE_SOURCE = "vivified://core"  # the source of core's own lifecycle events
log = logging.getLogger("vivified.events")


class StreamUnavailable(Exception):
    """NATS/JetStream cannot take the event now (answer 503, never hang, never drop)."""


def cloud_event(
    *,
    event_id: str | None,
    type_: str,
    source: str,
    data: Any,
    subject: str | None,
    extensions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The envelope; `extensions` are CloudEvents extension attributes (`traceparent`)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or uuid.uuid4().hex,
        "source": source,
        "type": type_,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }
    if subject:
        event["subject"] = subject
    event.update(extensions or {})  # stored with the event, delivered to every subscriber
    return event


def dedup_id(event: dict[str, Any]) -> str:
    """The JetStream message id: the event's id scoped to its publisher (`source`, which core
    sets). A hash of the pair, unambiguous (JSON-encoded) and header-safe whatever they hold."""
    pair = json.dumps([str(event["source"]), str(event["id"])], separators=(",", ":"))
    return hashlib.sha256(pair.encode()).hexdigest()


def ordering_key(event: dict[str, Any]) -> str:
    """What must stay in order: one entity's events (CloudEvents subject), else one type's."""
    return str(event.get("subject") or event.get("type", ""))


def lane_of(event: dict[str, Any], lanes: int) -> int:
    return zlib.crc32(ordering_key(event).encode()) % lanes


class EventStream:
    def __init__(self, bus: Bus | None, settings: Settings) -> None:
        self._bus = bus
        self._settings = settings
        self._ready_for: object | None = None
        self._js: JetStreamContext | None = None

    @property
    def subject(self) -> str:
        """Events live on `<prefix>.<Type>` (default `vivified.events.<Type>`)."""
        return self._settings.events_subject

    @property
    def lanes(self) -> int:
        return self._settings.events_partitions

    def lane_filter(self, lane: int) -> str:
        """The subjects of one ordering lane, every type."""
        return f"{self.subject}.*.{lane}"

    @property
    def dlq_subject(self) -> str:
        return self._settings.events_subject.rsplit(".", 1)[0] + ".deadletter"

    @property
    def events(self) -> str:
        return self._settings.events_stream

    @property
    def deadletters(self) -> str:
        return self._settings.events_dlq_stream

    def client(self) -> Client:
        """The live NATS connection (StreamUnavailable without one)."""
        nc = self._bus.client if self._bus is not None else None
        if nc is None:
            raise StreamUnavailable("NATS is not connected")
        return nc

    async def js(self) -> JetStreamContext:
        """A JetStream context on a live connection, with both streams in place."""
        nc = self.client()
        if self._ready_for is not nc or self._js is None:
            js = nc.jetstream(timeout=2)
            await self._ensure(js)
            self._js, self._ready_for = js, nc
        return self._js

    async def _ensure(self, js: JetStreamContext) -> None:
        s = self._settings
        for name, subjects, age in (
            (s.events_stream, [f"{self.subject}.>"], s.events_max_age),
            (s.events_dlq_stream, [f"{self.dlq_subject}.>"], 30 * 24 * 3600.0),
        ):
            config = StreamConfig(
                name=name,
                subjects=subjects,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=age,
                num_replicas=s.events_replicas,
                duplicate_window=DUPLICATE_WINDOW,
            )
            try:
                await js.add_stream(config)
            except Exception:  # exists (maybe another replica made it): keep it in step
                await js.update_stream(config)

    async def publish(self, event: dict[str, Any]) -> bool:
        """Store `event`; returns True when its publisher already stored that id."""
        try:
            js = await self.js()
            ack = await js.publish(
                f"{self.subject}.{event['type']}.{lane_of(event, self.lanes)}",
                json.dumps(event, separators=(",", ":")).encode(),
                timeout=2,
                stream=self.events,
                headers={"Nats-Msg-Id": dedup_id(event)},
            )
        except StreamUnavailable:
            raise
        except Exception as exc:  # timeout, no responders, disconnect: all mean "not stored"
            self._ready_for = None
            raise StreamUnavailable(type(exc).__name__) from exc
        return bool(ack.duplicate)

    async def dead_letter(
        self, subscriber: str, event: bytes, *, attempts: int, error: str, event_type: str
    ) -> None:
        js = await self.js()
        await js.publish(
            f"{self.dlq_subject}.{subscriber}.{event_type}",
            event,
            timeout=5,
            stream=self.deadletters,
            headers={
                "Vivified-Subscriber": subscriber,
                "Vivified-Attempts": str(attempts),
                "Vivified-Error": error[:200],
            },
        )

    async def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        js = await self.js()
        info = await js.stream_info(self.deadletters)
        out: list[dict[str, Any]] = []
        seq = info.state.first_seq
        while seq and seq <= info.state.last_seq and len(out) < limit:
            try:
                msg = await js.get_msg(self.deadletters, seq)
            except Exception:  # deleted (replayed) sequence numbers leave gaps
                seq += 1
                continue
            headers = msg.headers or {}
            out.append(
                {
                    "seq": seq,
                    "subscriber": headers.get("Vivified-Subscriber", ""),
                    "attempts": int(headers.get("Vivified-Attempts", "0") or 0),
                    "error": headers.get("Vivified-Error", ""),
                    "event": json.loads(msg.data or b"{}"),
                }
            )
            seq += 1
        return out

    async def delete_dead_letter(self, seq: int) -> None:
        js = await self.js()
        await js.delete_msg(self.deadletters, seq)


class CorePublisher:
    """Publishes core's lifecycle events (`PluginRegistered`, ...) on the event lane, as
    source `core`; subscribers get them like any other event (delivery policy, assertion
    from core). Best effort: without the bus the change stands, with a warning in the log."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    async def __call__(self, kind: str, data: dict[str, Any]) -> None:
        event = cloud_event(
            event_id=None,
            type_=kind,
            source=CORE_SOURCE,
            data=data,
            subject=str(data.get("plugin_id") or "") or None,
        )
        try:
            await self._stream.publish(event)
        except Exception as exc:  # StreamUnavailable, or no bus configured
            log.warning("core event %s not published: %s", kind, type(exc).__name__)
