"""The audit writer: records queue in memory and are appended to the chain in batches.

Callers `await record(event)`; when the queue is full they wait (back-pressure), so nothing
is ever dropped. One background task drains the queue: every batch is one transaction that
locks the chain head, numbers and hashes the records after it, inserts them in one statement
and moves the head. Several processes (gateway replicas, the egress proxy) share one chain:
the head row serialises them.

Every event is bounded as it is queued (`audit_bounds.bound_event`: text length and
characters, numbers), whoever produced it. A write the store cannot take now (connection,
lock, missing table) is retried with backoff, never skipped; `healthy` turns False meanwhile
so lanes can fail closed for sensitive targets. A write the store refuses for its values (a
data error) is not retried as is: the batch is split in halves until the refused record is
found, the others are written in order, and the refused one goes to the quarantine table
(`quarantine`: ASCII JSON, outside the chain) while a sanitised stand-in (reason
`unstorable_record`, `detail.quarantine_id` naming the row) takes its place in the chain, both
in one transaction, with an ERROR in the log (no values). If even the stand-in is refused, the
record is quarantined alone and the chain skips it (logged too). Each part is its own
transaction on the chain head, so the chain stays whole either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.audit.bounds import bound_event, error_code, is_data_error, stand_in
from vivified.registry.audit.quarantine import Quarantined, payload
from vivified.registry.audit.quarantine import insert as quarantine_insert
from vivified.registry.audit.rows import (
    COLUMNS,
    LOCK_HEAD,
    MOVE_HEAD,
    NO_HEAD,
    READ_HEAD,
    chain_rows,
    insert_rows,
    lock_head,
    sqlite_thread,
    store_rows,
)

log = logging.getLogger("vivified.audit")

OnCommit = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]
_MAX_BACKOFF = 5.0
# Building a batch yields to the event loop every YIELD_EVERY rows: often enough that no
# request waits long behind it, rarely enough that a busy loop (every yield waits for a
# whole turn of it) does not throttle the writer below the request rate — at 16 it fell
# to ~1,750 rows/s under 32 busy connections while the lane served ~4,600 req/s.
YIELD_EVERY = 128


def _as_row(params: Sequence[Any]) -> dict[str, Any]:
    """A stored row as the mirror publishes it (`detail` decoded again)."""
    row = dict(zip(COLUMNS, params, strict=True))
    row["detail"] = json.loads(row["detail"])
    return row


@dataclass
class AuditEvent:
    """One decision. `time` defaults to when it was recorded; never put a token in `detail`."""

    actor: str
    lane: str
    action: str
    target: str
    decision: str
    reason: str
    request_id: str = ""
    status: int = 0
    latency_ms: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    time: float | None = None


def since(started: float) -> float:
    """Milliseconds elapsed since a `time.perf_counter()` reading (an event's latency)."""
    return (time.perf_counter() - started) * 1000


class AuditWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        on_commit: OnCommit | None = None,
    ) -> None:
        self._sessions = sessions
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._on_commit = on_commit
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._healthy = True
        self._taken = asyncio.Event()  # set whenever the writer takes records off the queue
        self.written = 0
        self.quarantined = 0  # records this writer put in the quarantine table
        self.on_batch: Callable[[int, float], None] | None = None  # metrics: (size, seconds)

    # -- producers ---------------------------------------------------------------------------

    async def record(self, event: AuditEvent) -> None:
        """Queue `event`; waits while the queue is full (slows the caller, drops nothing)."""
        if not self.record_nowait(event):  # the common case, without a suspension point
            await self._queue.put(event)

    def record_nowait(self, event: AuditEvent) -> bool:
        """Queue `event` if there is room; False when full (the caller must then `record`)."""
        if event.time is None:
            event.time = time.time()
        bound_event(event)  # every producer passes here: nothing unbounded reaches the store
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    @property
    def full(self) -> bool:
        return self._queue.full()

    async def room(self) -> None:
        """Wait while the queue is full. Callers whose record comes after their answer (the
        operator lane) wait here first, so a slow store slows the callers instead of piling
        up finished requests that wait to be recorded."""
        while self._queue.full():
            self._taken.clear()
            await self._taken.wait()

    def set_on_commit(self, on_commit: OnCommit | None) -> None:
        """Called with every committed batch (e.g. to mirror records to NATS)."""
        self._on_commit = on_commit

    @property
    def healthy(self) -> bool:
        """False while the store cannot be written (the backlog is kept and retried)."""
        return self._healthy

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._in_flight

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def flush(self, wait_s: float = 30.0) -> bool:
        """Wait until everything queued so far is committed; False on timeout."""
        if self._task is None:
            await self._drain_once()
            return self._queue.empty()
        try:
            await asyncio.wait_for(self._queue.join(), wait_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, wait_s: float = 30.0) -> None:
        """Write what is queued (bounded by `wait_s`), then stop the task."""
        await self.flush(wait_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._queue.empty():
            log.error("audit writer stopped with %d unwritten records", self._queue.qsize())

    # -- the writer --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            if self._queue.qsize() < self._batch_size - 1 and self._flush_interval > 0:
                # Wait a moment for company: fewer, larger transactions (off the request path).
                await asyncio.sleep(self._flush_interval)
            await self._write_until_done(self._take(batch))

    async def _drain_once(self) -> None:
        while not self._queue.empty():
            await self._write_until_done(self._take([]))

    def _take(self, batch: list[AuditEvent]) -> list[AuditEvent]:
        """Fill `batch` from the queue up to the batch size; wakes callers waiting for room."""
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        self._taken.set()
        return batch

    async def _write_until_done(self, batch: list[AuditEvent]) -> None:
        """Write `batch` in order, whatever it takes: retry while the store is unavailable,
        split it when the store refuses its data (see the module docstring)."""
        self._in_flight = len(batch)
        began = time.perf_counter()
        # The parts still to write, in order: (events, quarantine, alone). A stand-in goes
        # with its quarantine entry; `alone` is that entry without a stand-in in the chain.
        todo: list[_Part] = [(batch, None, False)]
        delay = 0.05
        while todo:
            events, quarantine, alone = todo[0]
            rows: list[tuple[Any, ...]] = []
            try:
                if alone:
                    assert quarantine is not None
                    qid = await self._quarantine_only(quarantine)
                else:
                    rows, qid = await self._append(events, quarantine)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_data_error(exc):
                    if self._healthy:
                        log.exception("audit store write failed; retrying (nothing is dropped)")
                    self._healthy = False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _MAX_BACKOFF)
                    continue
                replacement = self._isolate(events, quarantine, alone, exc)
                todo[0:1] = replacement
                if not replacement:  # not even the quarantine took it: skipped
                    await self._committed(1, [])
                continue
            del todo[0]
            delay = 0.05
            if quarantine is not None:
                self.quarantined += 1
                _alert(quarantine, qid, in_chain=not alone)
            await self._committed(1 if quarantine is not None else len(events), rows)
        self._in_flight = 0
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - began)

    def _isolate(
        self,
        events: list[AuditEvent],
        quarantine: Quarantined | None,
        alone: bool,
        exc: BaseException,
    ) -> list[_Part]:
        """What replaces a part the store refused for its data: its two halves; a stand-in
        with the record's quarantine entry; the entry alone when the stand-in was refused;
        nothing when even that was refused (logged, no values)."""
        if quarantine is None and len(events) > 1:
            half = len(events) // 2
            return [(events[:half], None, False), (events[half:], None, False)]
        if quarantine is None:
            (event,) = events
            safe = stand_in(event, exc)  # safe ASCII, none of its detail
            entry = Quarantined(safe, error_code(exc), payload(event))
            return [([safe], entry, False)]
        if not alone:
            return [([], quarantine, True)]
        log.error(
            "audit store refused a record, its stand-in and its quarantine entry (%s); skipped: %s",
            error_code(exc),
            _where(quarantine.safe),
        )
        return []

    async def _quarantine_only(self, q: Quarantined) -> int:
        async with self._sessions() as s, s.begin():
            return await quarantine_insert(await s.connection(), q)

    async def _committed(self, taken: int, rows: list[tuple[Any, ...]]) -> None:
        """`taken` queued records are done (`rows` stored for them): account, mirror."""
        self._healthy = True
        self._in_flight = max(0, self._in_flight - taken)
        self.written += len(rows)
        for _ in range(taken):
            self._queue.task_done()
        if self._on_commit is not None and rows:
            try:
                await self._on_commit([_as_row(r) for r in rows])
            except Exception:
                log.exception("audit mirror failed (the records are stored)")

    async def _append(
        self, batch: Sequence[AuditEvent], quarantine: Quarantined | None = None
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Append `batch` to the chain in one transaction; returns the stored rows' values
        (and the id of the quarantine row stored with a stand-in, else 0)."""
        # Core statements on the session's connection, not the ORM: an ORM get and flush of
        # the head row cost ~1 ms per batch, as much as a hundred records.
        async with self._sessions() as s, s.begin():
            conn = await s.connection()
            # SQLite: the head and then the rows in one hand-off each (see rows.sqlite_thread)
            in_thread = None if quarantine is not None else await sqlite_thread(conn)
            # The UPDATE takes the write lock first (SQLite) / the row lock (PostgreSQL), so
            # concurrent writers queue here instead of forking the chain.
            if in_thread is not None:
                head = await in_thread(lock_head)
            else:
                await conn.execute(LOCK_HEAD)
                head = (await conn.execute(READ_HEAD)).first()
            if head is None:
                raise RuntimeError(NO_HEAD)
            last_id, last_hash = head
            qid = 0
            if quarantine is not None:  # the stand-in names the row its record went to
                qid = await quarantine_insert(conn, quarantine)
                for event in batch:
                    event.detail = {**event.detail, "quarantine_id": qid}
            params: list[tuple[Any, ...]] = []
            for start in range(0, len(batch), YIELD_EVERY):
                if start:
                    await asyncio.sleep(0)  # let requests run: no long stall on big batches
                chunk = batch[start : start + YIELD_EVERY]
                last_id, last_hash = chain_rows(chunk, last_id, last_hash, params)
            if in_thread is not None:
                await in_thread(functools.partial(store_rows, params, last_id, last_hash))
            else:
                # Straight to the driver: SQLAlchemy's per-row parameter handling cost more
                # than everything else in a batch. Values are plain, detail is JSON text.
                await insert_rows(conn, params)
                await conn.execute(MOVE_HEAD, {"last_id": last_id, "last_hash": last_hash})
        return params, qid


_Part = tuple[list[AuditEvent], Quarantined | None, bool]


def _where(safe: AuditEvent) -> str:
    """Where a refused record was, in safe ASCII and without its values."""
    where = f"lane={safe.lane} action={safe.action} decision={safe.decision}"
    return where + f" time={safe.time} request_id={safe.request_id}"


def _alert(q: Quarantined, qid: int, *, in_chain: bool) -> None:
    """The operator's alert for a quarantined record: an ERROR naming the row, no values."""
    if in_chain:
        log.error(
            "audit store refused a record (%s); quarantined as audit_quarantine id=%d,"
            " a stand-in holds its place in the chain: %s",
            q.refused,
            qid,
            _where(q.safe),
        )
    else:
        log.error(
            "audit store refused a record and its stand-in (%s); skipped in the chain,"
            " quarantined as audit_quarantine id=%d: %s",
            q.refused,
            qid,
            _where(q.safe),
        )
