"""A record the store refuses goes to the quarantine table; a stand-in in the chain names it.

Nothing else is lost, the chain verifies, the writer goes on, the operator gets an ERROR
(without the record's values) and a count.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vivified.registry.audit.chain import verify_chain
from vivified.registry.audit.quarantine import count as quarantine_count
from vivified.registry.audit.writer import AuditEvent, AuditWriter

WAIT = 10.0


def event(i: int, **changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "actor": f"actor-{i}",
        "lane": "egress",
        "action": "request",
        "target": f"host-{i}",
        "decision": "deny",
        "reason": "test",
        "request_id": f"r{i}",
        "status": 407,
        "detail": {"i": i},
        "time": 1_700_000_000.0 + i,
    }
    values.update(changes)
    return AuditEvent(**values)  # type: ignore[arg-type]


async def refuse(engine: AsyncEngine, column: str, value: str) -> None:
    """Make the store itself refuse an audit row whose `column` contains `value`."""
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql(
                f"CREATE TRIGGER refuse_{column} BEFORE INSERT ON audit_records"
                f" WHEN instr(NEW.{column}, '{value}') > 0"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            await conn.exec_driver_sql(
                f"ALTER TABLE audit_records ADD CONSTRAINT refuse_{column}"
                f" CHECK (strpos({column}, '{value}') = 0)"
            )


async def select(sessions: async_sessionmaker[AsyncSession], sql: str) -> list[dict[str, object]]:
    async with sessions() as s:
        return [dict(r._mapping) for r in await s.execute(text(sql))]


@pytest.fixture
async def writer(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AuditWriter]:
    w = AuditWriter(sessions, queue_size=100, batch_size=50, flush_interval=0.05)
    try:
        yield w
    finally:
        await w.stop(wait_s=1)


async def write(writer: AuditWriter, events: list[AuditEvent]) -> None:
    for e in events:
        assert writer.record_nowait(e)
    writer.start()
    assert await writer.flush(wait_s=WAIT), "the writer is stuck on the batch"


async def test_a_refused_record_is_quarantined_and_its_stand_in_names_the_row(
    writer: AuditWriter,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await refuse(engine, "reason", "poison")  # the stand-in's reason differs: it is taken
    poison = event(
        3, reason="poison", actor="claimed:secret-x", detail={"token_hint": "hidden-value"}
    )
    with caplog.at_level(logging.WARNING, logger="vivified.audit"):
        await write(writer, [event(0), event(1), event(2), poison, event(4), event(5)])

    rows = await select(sessions, "SELECT * FROM audit_records ORDER BY id")
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    standin = rows[3]
    assert standin["reason"] == "unstorable_record"
    detail = (
        standin["detail"]
        if isinstance(standin["detail"], dict)
        else json.loads(str(standin["detail"]))
    )
    quarantined = await select(sessions, "SELECT * FROM audit_quarantine")
    assert len(quarantined) == 1
    row = quarantined[0]
    assert detail["quarantine_id"] == row["id"]
    assert (row["lane"], row["action"], row["decision"], row["request_id"]) == (
        "egress",
        "request",
        "deny",
        "r3",
    )
    assert str(row["refused"]).startswith(("sqlstate 23", "IntegrityError"))
    record = json.loads(str(row["record"]))
    assert record["actor"] == "claimed:secret-x"  # what it said is kept, aside
    assert record["detail"] == {"token_hint": "hidden-value"}
    assert str(row["record"]).isascii()

    report = await verify_chain(sessions)
    assert (report.ok, report.checked) == (True, 6)
    assert writer.quarantined == 1
    async with engine.connect() as conn:
        assert await quarantine_count(conn) == 1

    alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alerts) == 1
    message = alerts[0].getMessage()
    assert f"audit_quarantine id={row['id']}" in message
    assert "request_id=r3" in message
    assert "secret-x" not in message
    assert "hidden-value" not in message
    assert alerts[0].exc_info is None

    # the writer goes on
    assert writer.record_nowait(event(6))
    assert await writer.flush(wait_s=WAIT)
    after = await select(sessions, "SELECT request_id FROM audit_records ORDER BY id")
    assert after[-1]["request_id"] == "r6"
    assert (await verify_chain(sessions)).ok


async def test_a_record_whose_stand_in_is_refused_too_is_still_quarantined(
    writer: AuditWriter,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await refuse(engine, "action", "poison")  # the stand-in keeps the action: refused again
    poison = event(3, action="poison", actor="secret-actor")
    with caplog.at_level(logging.WARNING, logger="vivified.audit"):
        await write(writer, [event(0), poison, event(4)])
    rows = await select(sessions, "SELECT request_id FROM audit_records ORDER BY id")
    assert [r["request_id"] for r in rows] == ["r0", "r4"]
    quarantined = await select(sessions, "SELECT * FROM audit_quarantine")
    assert [(q["action"], q["request_id"]) for q in quarantined] == [("poison", "r3")]
    assert json.loads(str(quarantined[0]["record"]))["actor"] == "secret-actor"
    assert (await verify_chain(sessions)).ok
    (alert,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "skipped in the chain" in alert.getMessage()
    assert "secret-actor" not in alert.getMessage()


async def test_values_no_backend_takes_are_quarantined_as_ascii(
    writer: AuditWriter,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await refuse(engine, "reason", "poison")
    # skip the intake's bounding so the quarantine itself sees the raw values
    monkeypatch.setattr("vivified.registry.audit.writer.bound_event", lambda e: e)
    poison = event(3, reason="poison", actor="nul\x00lone\ud800", detail={"k": "\x00"})
    await write(writer, [poison])
    (row,) = await select(sessions, "SELECT record FROM audit_quarantine")
    stored = str(row["record"])
    assert stored.isascii()
    assert json.loads(stored)["actor"] == "nul\x00lone\ud800"
