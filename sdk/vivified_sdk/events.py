"""Receiving events: an ASGI endpoint for your manifest's `endpoints.events` path.

Core delivers each event as a CloudEvents 1.0 JSON document (`POST`,
`application/cloudevents+json`) with `X-Vivified-Assertion` (`sub` = publisher, `aud` = you,
`rid` = the event id). `EventEndpoint` verifies the assertion and the envelope, drops an
event it has already handled (delivery is at-least-once; a bounded LRU of event ids), calls
your handler, and answers 204 when it returned, 500 when it raised (core then retries with
backoff), 400/401 problem+json when the delivery is not acceptable::

    async def on_event(event: CloudEvent) -> None:
        if event.type == "UserCreated":
            ...

    app = Starlette(routes=[Route("/events", plugin.event_endpoint(on_event),
                                  methods=["POST"])])
"""

from __future__ import annotations

import inspect
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from vivified_sdk.assertion import InvalidAssertion
from vivified_sdk.jwks import JwksCache
from vivified_sdk.middleware import Receive, Scope, Send, send_problem, verify_scope

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1024 * 1024
REQUIRED = ("specversion", "id", "source", "type")


@dataclass(frozen=True)
class CloudEvent:
    """One delivered event (CloudEvents 1.0); `publisher` is the verified `sub` of the
    assertion, `raw` the whole document."""

    id: str
    type: str
    source: str
    data: Any
    publisher: str
    time: str | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


Handler = Callable[[CloudEvent], Awaitable[None] | None]


class InvalidEvent(ValueError):
    """The body is not a CloudEvents 1.0 JSON document."""


def parse_cloud_event(body: bytes, publisher: str) -> CloudEvent:
    """Check the CloudEvents 1.0 envelope; raises InvalidEvent."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise InvalidEvent("the body is not JSON") from exc
    if not isinstance(doc, dict):
        raise InvalidEvent("the body is not a JSON object")
    for name in REQUIRED:
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(f"missing or empty CloudEvents attribute {name!r}")
    if doc["specversion"] != "1.0":
        raise InvalidEvent("only CloudEvents specversion 1.0 is accepted")
    for name in ("time", "subject", "datacontenttype"):
        if name in doc and not isinstance(doc[name], str):
            raise InvalidEvent(f"CloudEvents attribute {name!r} must be a string")
    return CloudEvent(
        id=doc["id"],
        type=doc["type"],
        source=doc["source"],
        data=doc.get("data"),
        publisher=publisher,
        time=doc.get("time"),
        subject=doc.get("subject"),
        datacontenttype=doc.get("datacontenttype"),
        raw=doc,
    )


class SeenEvents:
    """A bounded LRU of handled event ids."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = max(1, size)
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, str) or event_id not in self._ids:
            return False
        self._ids.move_to_end(event_id)
        return True

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)


async def _read_body(receive: Receive, cap: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return b""
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class EventEndpoint:
    """ASGI app receiving core's event deliveries (see the module docstring)."""

    def __init__(
        self,
        handler: Handler,
        *,
        audience: str,
        jwks: JwksCache,
        base_path: str = "",
        dedupe_size: int = 10_000,
        max_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.handler = handler
        self.audience = audience
        self.jwks = jwks
        self.base_path = base_path
        self.seen = SeenEvents(dedupe_size)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await send_problem(send, 405, "method_not_allowed", "events are delivered by POST")
            return
        try:
            claims = await verify_scope(scope, self.jwks, self.audience, base_path=self.base_path)
        except InvalidAssertion as exc:
            await send_problem(send, 401, "invalid_assertion", str(exc))
            return
        body = await _read_body(receive, self.max_bytes)
        if body is None:
            return
        if not body:
            await send_problem(send, 413, "too_large", "the event is too large or empty")
            return
        try:
            event = parse_cloud_event(body, str(claims["sub"]))
        except InvalidEvent as exc:
            await send_problem(send, 400, "invalid_event", str(exc))
            return
        if claims.get("rid") not in (None, event.id):
            await send_problem(send, 401, "invalid_assertion", "assertion is for another event")
            return
        if event.id not in self.seen:
            try:
                result = self.handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event handler failed for event %s (%s)", event.id, event.type)
                await send_problem(send, 500, "handler_failed", "the handler failed; retry")
                return
            self.seen.add(event.id)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
