"""The audit writer and chain: nothing dropped, every tampering detected, queries page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vivified.registry.audit import rows as rows_module
from vivified.registry.audit.chain import verify_chain
from vivified.registry.audit.query import query_audit
from vivified.registry.audit.writer import AuditEvent, AuditWriter
from vivified.registry.store.engine import create_engine, session_factory


def event(i: int, **changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "actor": f"actor-{i % 3}",
        "lane": "registry",
        "action": "register",
        "target": f"plugin-{i % 5}",
        "decision": "allow" if i % 2 else "deny",
        "reason": "test",
        "request_id": f"r{i}",
        "status": 200,
        "latency_ms": 1.23456,
        "bytes_in": i,
        "bytes_out": 2 * i,
        "detail": {"i": i, "nested": {"x": [1, 2]}},
    }
    values.update(changes)
    return AuditEvent(**values)  # type: ignore[arg-type]


@pytest.fixture
async def writer(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AuditWriter]:
    w = AuditWriter(sessions, queue_size=50, batch_size=20, flush_interval=0.01)
    w.start()
    yield w
    await w.stop()


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int((await s.execute(text("SELECT count(*) FROM audit_records"))).scalar_one())


async def test_concurrent_records_are_all_written_and_chained(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # 500 producers against a queue of 50: callers wait, nothing is dropped
    await asyncio.gather(*(writer.record(event(i)) for i in range(500)))
    assert await writer.flush()
    assert await count(sessions) == 500
    report = await verify_chain(sessions)
    assert (report.ok, report.checked) == (True, 500)


async def test_two_processes_share_one_chain(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    other_engine = create_engine(str(engine.url.render_as_string(hide_password=False)))
    other = AuditWriter(session_factory(other_engine), batch_size=7, flush_interval=0)
    mine = AuditWriter(sessions, batch_size=5, flush_interval=0)
    mine.start()
    other.start()
    try:
        await asyncio.gather(
            *(mine.record(event(i)) for i in range(200)),
            *(other.record(event(i, lane="egress")) for i in range(200)),
        )
        assert await mine.flush()
        assert await other.flush()
    finally:
        await mine.stop()
        await other.stop()
        await other_engine.dispose()
    assert await count(sessions) == 400
    assert (await verify_chain(sessions)).ok


async def test_a_failing_store_is_retried_not_dropped(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as s, s.begin():
        await s.execute(text("ALTER TABLE audit_records RENAME TO audit_records_away"))
    await writer.record(event(1))
    for _ in range(200):
        if not writer.healthy:
            break
        await asyncio.sleep(0.02)
    assert not writer.healthy
    assert writer.pending == 1
    async with sessions() as s, s.begin():
        await s.execute(text("ALTER TABLE audit_records_away RENAME TO audit_records"))
    assert await writer.flush(wait_s=20)
    assert writer.healthy
    assert await count(sessions) == 1


TAMPERING = [
    pytest.param("UPDATE audit_records SET reason = 'edited' WHERE id = 5", 5, id="edit-field"),
    pytest.param("UPDATE audit_records SET status = 201 WHERE id = 9", 9, id="edit-status"),
    pytest.param("DELETE FROM audit_records WHERE id = 4", 5, id="delete-middle"),
    pytest.param("DELETE FROM audit_records WHERE id = 10", 10, id="delete-last"),
    pytest.param("DELETE FROM audit_records WHERE id = 1", 2, id="delete-first"),
    pytest.param("UPDATE audit_records SET hash = prev_hash WHERE id = 3", 3, id="overwrite-hash"),
    pytest.param(
        "INSERT INTO audit_records SELECT id + 100, time, actor, lane, action, target, decision,"
        " reason, request_id, status, latency_ms, bytes_in, bytes_out, detail, prev_hash, hash"
        " FROM audit_records WHERE id = 2",
        102,
        id="insert-beyond-head",
    ),
]


@pytest.mark.parametrize(("sql", "bad_id"), TAMPERING)
async def test_tampering_is_detected(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession], sql: str, bad_id: int
) -> None:
    for i in range(10):
        await writer.record(event(i))
    assert await writer.flush()
    assert (await verify_chain(sessions)).ok
    async with sessions() as s, s.begin():
        await s.execute(text(sql))
    report = await verify_chain(sessions)
    assert not report.ok
    assert report.first_bad_id == bad_id


async def test_query_filters_and_pages_newest_first(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    for i in range(30):
        await writer.record(event(i))
    assert await writer.flush()
    items, cursor = await query_audit(sessions, actor="actor-1", limit=4)
    assert [r["request_id"] for r in items] == ["r28", "r25", "r22", "r19"]
    assert cursor is not None
    rest: list[str] = []
    while cursor is not None:
        page, cursor = await query_audit(sessions, actor="actor-1", limit=4, cursor=cursor)
        rest += [r["request_id"] for r in page]
    assert rest == ["r16", "r13", "r10", "r7", "r4", "r1"]
    denied, _ = await query_audit(sessions, decision="deny", target="plugin-0", limit=100)
    assert {r["request_id"] for r in denied} == {"r0", "r10", "r20"}
    first = items[0]
    assert first["time"].endswith("Z")
    assert set(first) >= {
        "id",
        "time",
        "actor",
        "lane",
        "action",
        "target",
        "decision",
        "reason",
        "request_id",
        "status",
        "latency_ms",
        "bytes_in",
        "bytes_out",
        "prev_hash",
        "hash",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"cursor": "!!!"}, id="garbage-cursor"),
        pytest.param({"cursor": "djI6MQ"}, id="wrong-version-cursor"),
        pytest.param({"limit": 0}, id="zero-limit"),
        pytest.param({"limit": 5000}, id="huge-limit"),
        pytest.param({"decision": "maybe"}, id="unknown-decision"),
    ],
)
async def test_bad_queries_are_value_errors(
    sessions: async_sessionmaker[AsyncSession], kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match=r"cursor|limit|decision"):
        await query_audit(sessions, **kwargs)  # type: ignore[arg-type]


async def test_room_waits_while_the_queue_is_full(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    w = AuditWriter(sessions, queue_size=2, batch_size=2, flush_interval=0)
    await w.room()  # empty: no wait
    assert w.record_nowait(event(1))
    assert w.record_nowait(event(2))
    waiting = asyncio.create_task(w.room())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()  # full, and nothing takes records off the queue yet
    w.start()
    try:
        await asyncio.wait_for(waiting, 10)
        assert await w.flush()
    finally:
        await w.stop()
    assert await count(sessions) == 2


async def test_a_big_batch_gives_the_loop_back_rarely(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under load every yield waits for a whole turn of a busy loop: yielding every few rows
    # throttled the writer below the request rate. A 500-row batch yields a handful of times.
    yields = 0
    real_sleep = asyncio.sleep

    async def counting_sleep(delay: float, *args: object) -> None:
        nonlocal yields
        if delay == 0:
            yields += 1
        await real_sleep(delay)

    w = AuditWriter(sessions, queue_size=1000, batch_size=500, flush_interval=0)
    for i in range(500):
        assert w.record_nowait(event(i))
    monkeypatch.setattr("vivified.registry.audit.writer.asyncio.sleep", counting_sleep)
    await w.flush()  # no task: one batch written in the caller
    monkeypatch.undo()
    assert await count(sessions) == 500
    assert 1 <= yields <= 500 // 100


async def test_sqlite_takes_a_batch_in_multi_row_inserts(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite's executemany hands the GIL to the event loop and back at every row; a batch
    # goes in as statements of up to ROWS_PER_INSERT rows instead (elsewhere: executemany).
    monkeypatch.setattr("vivified.registry.audit.rows.ROWS_PER_INSERT", 4)
    sizes: list[int] = []
    real_sql = rows_module.insert_sql

    def sql_seen(paramstyle: str, rows: int = 1) -> str:
        sizes.append(rows)
        return real_sql(paramstyle, rows)

    monkeypatch.setattr("vivified.registry.audit.rows.insert_sql", sql_seen)
    inserts: list[bool] = []

    def seen(*args: object) -> None:
        statement, executemany = args[2], args[5]
        assert isinstance(statement, str)
        assert isinstance(executemany, bool)
        if statement.startswith("INSERT INTO audit_records"):
            inserts.append(executemany)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", seen)
    w = AuditWriter(sessions, queue_size=100, batch_size=50, flush_interval=0)
    for i in range(10):
        assert w.record_nowait(event(i))
    await w.flush()
    sa_event.remove(engine.sync_engine, "before_cursor_execute", seen)
    monkeypatch.undo()
    if engine.dialect.paramstyle == "qmark":
        assert sizes == [4, 4, 2]
        assert inserts == []  # on SQLite's own connection, not through SQLAlchemy
    else:
        assert sizes == [1]
        assert inserts == [True]  # one executemany
    assert await count(sessions) == 10
    report = await verify_chain(sessions)
    assert (report.ok, report.checked) == (True, 10)
    async with sessions() as s:
        rows = (await s.execute(text("SELECT id, bytes_in FROM audit_records ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [(i + 1, i) for i in range(10)]


async def test_a_sqlite_batch_is_one_hand_off(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiosqlite runs each call in its connection's thread: statement by statement, a batch
    # took 15 hand-offs (2.4-3.1 ms of CPU whatever its size). Locking and reading the head is
    # one call, storing the rows and moving the head another; the session's commit and the
    # pool's reset add the rest.
    if engine.dialect.paramstyle != "qmark":
        pytest.skip("aiosqlite's thread hand-offs only")
    w = AuditWriter(sessions, queue_size=100, batch_size=50, flush_interval=0)
    for i in range(5):
        assert w.record_nowait(event(i))
    await w.flush()  # a first batch: the pool's connection is open and warm
    calls = 0
    real_execute: Any = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real_execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    for i in range(40):
        assert w.record_nowait(event(i))
    await w.flush()
    monkeypatch.undo()
    assert await count(sessions) == 45
    assert (await verify_chain(sessions)).ok
    assert 1 <= calls <= 4, calls  # 15 when each statement went on its own
