"""Delivering canonical events to subscribers' webhooks, at least once, in order.

Per subscriber, one durable JetStream pull consumer per ordering lane (`sub-<id>-l<n>`,
filtering `vivified.events.*.<n>`), shared by every gateway replica; `max_ack_pending=1`
keeps one event in flight per lane, so the replicas deliver each event once and, within a
lane (one entity, or one type — see event_stream), in stream order, while the lanes run in
parallel. A failed delivery is retried in place with exponential backoff (the event stays at
the head of its lane, so later events of that lane wait behind it) and after
`event_max_attempts` goes to the dead-letter stream. Events a subscriber's traits do not
cover are skipped (and audited); disabled subscribers get nothing until re-enabled. How the
consumers are made, replaced and deleted: `consumers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from vivified.config.settings import Settings
from vivified.gateway.events.consumers import (
    Consumers,
    consumer_name,
    is_subscriber,
    subscriptions,
)
from vivified.gateway.events.pull import LanePull, Superseded
from vivified.gateway.events.stream import EventStream
from vivified.gateway.operator.exchange import UpstreamError
from vivified.gateway.operator.pool import UpstreamPool, base_path, encode_path
from vivified.gateway.tracing import TRACE_KEY, event_headers, trace_id_of
from vivified.policy.audit_levels import added_fields, level_detail, records, strictest
from vivified.policy.events import decide_delivery
from vivified.registry.audit.writer import AuditEvent, AuditWriter
from vivified.registry.event_catalogue import event_type
from vivified.registry.identity.tokens import TokenService
from vivified.registry.store.snapshot import PluginView, Snapshot, SnapshotHolder

log = logging.getLogger("vivified.events")


def _target(base_url: str, path: str) -> bytes:
    """The request target for a webhook: the base URL's path, then the declared endpoint,
    percent-encoded so that no byte of it can end the request line."""
    return base_path(base_url) + encode_path(path)


class Dispatcher:
    def __init__(
        self,
        stream: EventStream,
        snapshot: SnapshotHolder,
        tokens: TokenService,
        audit: AuditWriter,
        settings: Settings,
    ) -> None:
        self._stream = stream
        self._snapshot = snapshot
        self._tokens = tokens
        self._audit = audit
        self._settings = settings
        self._workers: dict[str, list[asyncio.Task[None]]] = {}
        self._consumers = Consumers(stream)
        self._chores: set[asyncio.Task[None]] = set()
        self._reconciling = asyncio.Lock()
        self._http: UpstreamPool | None = None
        self.stats: dict[str, Counter[str]] = {}
        self.on_record: Any = None  # metrics: (subscriber, event, action)

    def start(self) -> None:
        self._snapshot.add_listener(self._reconcile)
        self._chore(self._reconcile(self._snapshot.current), "events-reconcile")

    async def _reconcile(self, snap: Snapshot) -> None:
        """Workers for the active subscribers of `snap`, and no others. A swap's listeners are
        awaited before the change's writer answers, so the consumers of a new subscriber are
        made first (`Consumers.prepare`). One swap at a time, in order."""
        async with self._reconciling:
            wanted = {
                pid for pid, view in snap.plugins.items() if view.active and is_subscriber(view)
            }
            for pid in list(self._workers):
                if pid not in wanted:
                    for task in self._workers.pop(pid):
                        task.cancel()
            for pid, since in self._consumers.gone(snap):
                self._chore(self._consumers.forget(pid, since), f"events-forget-{pid}")
            new = sorted(wanted - set(self._workers))
            if new:
                await self._consumers.prepare(snap, new)
            loop = asyncio.get_running_loop()
            for pid in new:
                self._workers[pid] = [
                    loop.create_task(self._worker(pid, lane), name=f"events-{pid}-{lane}")
                    for lane in range(self._stream.lanes)
                ]

    def _chore(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` beside the workers (cancelled by `stop`)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def stop(self) -> None:
        workers = [task for tasks in self._workers.values() for task in tasks]
        workers += self._chores
        self._workers.clear()
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()

    def _client(self) -> UpstreamPool:
        """The webhook client: the operator lane's keep-alive HTTP/1.1 pool (chosen there by
        measurement; aiohttp cost a third of the dispatcher's CPU), with its own limits."""
        if self._http is None:
            timeout = self._settings.event_delivery_timeout
            self._http = UpstreamPool(
                limit=self._settings.upstream_connections,
                connect_timeout=timeout,
                read_timeout=timeout,
            )
        return self._http

    async def _worker(self, pid: str, lane: int) -> None:
        replace = False
        while True:
            pull: LanePull | None = None
            view = self._snapshot.current.plugins.get(pid)
            since = view.since if view else None
            try:
                js = await self._stream.js()
                pull = self._consumers.lane(js, pid, since, lane)
                await pull.start(replace=replace)
                replace = False
                while True:
                    msg = await pull.next()
                    if msg is not None:
                        await self._handle(pid, msg)
            except asyncio.CancelledError:
                raise
            except Superseded:  # a later registration's consumer: is this replica behind?
                fresh = (await self._snapshot.confirm()).plugins.get(pid)
                replace = fresh is not None and fresh.since == since  # no: a clock's error
                await asyncio.sleep(0.05)
            except Exception as exc:  # NATS away or a transient error: retry, lose nothing
                log.warning(
                    "event worker for %s lane %d: %s; retrying", pid, lane, type(exc).__name__
                )
                await asyncio.sleep(1.0)
            finally:
                if pull is not None:
                    await pull.close()

    async def _handle(self, pid: str, msg: Any) -> None:
        try:
            event = json.loads(msg.data)
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            await msg.ack()
            return
        known = event_type(kind)
        view = self._snapshot.current.plugins.get(pid)
        if view is None or not view.active:
            await msg.nak(delay=5)  # hold it: the worker stops; a re-enabled plugin resumes
            return
        decision = decide_delivery(
            status=view.status,
            subscribed=subscriptions(view),
            traits=view.traits,
            event_type=kind,
            classification=known.classification if known else "confidential",
        )
        if not decision:
            await msg.ack()
            if decision.reason != "not_subscribed":
                await self._record(pid, event, "deny", decision.reason, 0, "skip")
            return
        attempts = self._settings.event_max_attempts
        delay = self._settings.event_retry_base
        error = ""
        level = self.level_of(event, view)
        for attempt in range(1, attempts + 1):
            wanted = added_fields(level)
            facts = self.policy_facts(decision.reason, view, known) if wanted else None
            ok, status, error = await self._deliver(view, event, msg.data, facts)
            if ok:
                await msg.ack()
                if records(level, "allow"):
                    await self._record(
                        pid, event, "allow", "delivered", status, "deliver", attempt, level, facts
                    )
                return
            await self._record(pid, event, "deny", error, status, "retry", attempt)
            if attempt == attempts:
                break
            await self._wait(msg, delay)
            delay = min(delay * 2, self._settings.event_retry_max)
            current = self._snapshot.current.plugins.get(pid)
            if current is None or not current.active:
                await msg.nak(delay=5)
                return
        await self._stream.dead_letter(
            pid, msg.data, attempts=attempts, error=error, event_type=kind
        )
        await msg.ack()
        await self._record(pid, event, "deny", "dead_lettered", 0, "dead_letter", attempts)

    @staticmethod
    async def _wait(msg: Any, seconds: float) -> None:
        """Sleep, telling JetStream we still own the message (ack_wait is 30 s)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 10.0))
            with contextlib.suppress(Exception):
                await msg.in_progress()

    def level_of(self, event: dict[str, Any], subscriber: PluginView) -> str:
        """The strictest audit level of the publisher (core: basic) and the subscriber."""
        source = str(event.get("source", ""))
        publisher = self._snapshot.current.plugins.get(source.rsplit("/", 1)[-1])
        return strictest((publisher.audit_level if publisher else "basic", subscriber.audit_level))

    @staticmethod
    def policy_facts(decided_by: str, view: PluginView, known: Any) -> dict[str, Any]:
        return {
            "params": [],
            "policy": {
                "decided_by": decided_by,
                "subscriber_traits": sorted(view.traits),
                "classification": known.classification if known else None,
                "grant": None,
            },
        }

    async def _deliver(
        self,
        view: PluginView,
        event: dict[str, Any],
        stored: bytes | None = None,
        facts: dict[str, Any] | None = None,
    ) -> tuple[bool, int, str]:
        """POST `event` to the subscriber; `stored` is its JSON as JetStream holds it (sent as
        it is, not encoded again). `facts` (detailed/complete audit levels) receives the sizes,
        content types, header names and body hashes of the exchange."""
        path = view.endpoints["events"]
        source = str(event.get("source", ""))
        publisher = source.rsplit("/", 1)[-1] or "core"
        event_id = str(event.get("id", ""))
        assertion = self._tokens.issue_assertion(
            publisher, view.id, method="POST", path=path, request_id=event_id
        )
        body = stored if stored is not None else json.dumps(event, separators=(",", ":")).encode()
        pool = self._client()
        origin = pool.origin(view.base_url)
        fields = (
            (b"content-type", b"application/cloudevents+json"),
            (b"x-vivified-assertion", assertion.token.encode()),
            (b"x-vivified-caller", publisher.encode()),
            (b"x-vivified-event-id", event_id.encode()),
            (b"content-length", b"%d" % len(body)),
            *event_headers(event),  # the event's trace, this delivery's span
        )
        head = b"POST %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (
            _target(view.base_url, path),
            origin.host_header,
            b"".join(b"%s: %s\r\n" % kv for kv in fields),
        )
        try:
            async with asyncio.timeout(self._settings.event_delivery_timeout):
                exchange = await pool.request(origin, head + body)
                try:
                    digest, size = hashlib.sha256(), 0
                    while chunk := await exchange.read_chunk():  # the answer is not used
                        size += len(chunk)
                        if facts is not None:
                            digest.update(chunk)
                    if facts is not None:
                        note_exchange(facts, fields, body, exchange.headers, size, digest)
                finally:
                    pool.release(exchange)
        except (UpstreamError, TimeoutError) as exc:
            return False, 0, type(exc).__name__
        status = exchange.status
        return 200 <= status < 300, status, f"http_{status}"

    async def _record(
        self,
        pid: str,
        event: dict[str, Any],
        decision: str,
        reason: str,
        status: int,
        action: str,
        attempt: int = 0,
        level: str = "basic",
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.stats.setdefault(pid, Counter())[action] += 1
        if self.on_record is not None:  # metrics
            self.on_record(pid, event, action)
        await self._audit.record(
            AuditEvent(
                actor="core:events",
                lane="events",
                action=action,
                target=pid,
                decision=decision,
                reason=reason,
                request_id=str(event.get("id", "")),
                status=status,
                detail={"type": str(event.get("type", "")), "attempt": attempt}
                | {TRACE_KEY: trace_id_of(event)}
                | level_detail(level, facts or {}),
            )
        )

    async def lag(self) -> list[dict[str, Any]]:
        """Per subscriber: events waiting, in flight, and this replica's counters."""
        js = await self._stream.js()
        out = []
        for pid in sorted(self._workers):
            item: dict[str, Any] = {"subscriber": pid, **dict(self.stats.get(pid, {}))}
            try:
                pending = in_flight = 0
                for lane in range(self._stream.lanes):
                    info = await js.consumer_info(self._stream.events, consumer_name(pid, lane))
                    pending += info.num_pending or 0
                    in_flight += info.num_ack_pending or 0
                item["pending"], item["in_flight"] = pending, in_flight
            except Exception:
                item["pending"] = None
            out.append(item)
        return out

    async def replay(self, seq: int, item: dict[str, Any]) -> tuple[bool, int, str]:
        """Deliver one dead letter again, now; removed from the dead letters on success."""
        view = self._snapshot.current.plugins.get(item["subscriber"])
        if view is None or not view.active or not view.endpoints.get("events"):
            return False, 0, "subscriber_not_active"
        ok, status, error = await self._deliver(view, item["event"])
        if ok:
            await self._stream.delete_dead_letter(seq)
        action = "replay" if ok else "replay_failed"
        await self._record(view.id, item["event"], "allow" if ok else "deny", error, status, action)
        return ok, status, error


def _type_of(headers: Any) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None)


def note_exchange(
    facts: dict[str, Any],
    sent: Any,
    body: bytes,
    answer: Any,
    size: int,
    digest: Any,
) -> None:
    """A webhook exchange's facts for a detailed/complete delivery record."""
    facts.update(
        request_size=len(body),
        request_content_type=_type_of(sent),
        request_headers=sorted({"host", *(k.decode("latin-1").lower() for k, _ in sent)}),
        request_sha256=hashlib.sha256(body).hexdigest(),
        response_size=size,
        response_content_type=_type_of(answer),
        response_headers=sorted({k.decode("latin-1").lower() for k, _ in answer}),
        response_sha256=digest.hexdigest(),
    )
