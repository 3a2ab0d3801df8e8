"""Audit records are bounded at the writer's intake, and a record the store refuses is
isolated: the others are written in order, the chain verifies, the writer goes on."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from vivified.registry.audit.chain import verify_chain
from vivified.registry.audit.writer import AuditEvent, AuditWriter

BOUND = 200
UNSTORABLE = "unstorable_record"
WAIT = 10.0  # seconds a flush may take; a wedged writer never finishes


def event(i: int, **changes: object) -> AuditEvent:
    values: dict[str, object] = {
        "actor": f"actor-{i}",
        "lane": "registry",
        "action": "register",
        "target": f"plugin-{i}",
        "decision": "deny",
        "reason": "test",
        "request_id": f"r{i}",
        "status": 401,
        "latency_ms": 1.5,
        "bytes_in": i,
        "bytes_out": 0,
        "detail": {"i": i},
        "time": 1_700_000_000.0 + i,
    }
    values.update(changes)
    return AuditEvent(**values)  # type: ignore[arg-type]


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, object]]:
    async with sessions() as s:
        result = await s.execute(text("SELECT * FROM audit_records ORDER BY id"))
        return [dict(r._mapping) for r in result]


@pytest.fixture
async def writer(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AuditWriter]:
    w = AuditWriter(sessions, queue_size=100, batch_size=50, flush_interval=0.05)
    try:
        yield w
    finally:
        await w.stop(wait_s=1)


async def write(writer: AuditWriter, events: list[AuditEvent]) -> None:
    """Queue `events` before the writer runs (one batch), then wait for them."""
    for e in events:
        assert writer.record_nowait(e)
    writer.start()
    assert await writer.flush(wait_s=WAIT), "the writer is stuck on the batch"


# -- bounding at the intake ------------------------------------------------------------------

HUGE = "x" * 8000
TEXT_FIELDS = ("actor", "lane", "action", "target", "decision", "reason", "request_id")
BOUNDED_TEXT = [
    pytest.param(HUGE, "x" * (BOUND - 1) + "…", id="8000-chars-truncated"),
    pytest.param("a\x00b\nc\x1bd\x7f", "a\\x00b\\x0ac\\x1bd\\x7f", id="controls-escaped"),
    pytest.param("lone\ud800surrogate", "lone\\ud800surrogate", id="lone-surrogate-escaped"),
    pytest.param("bidi\u202eswap\u200b", "bidi\\u202eswap\\u200b", id="invisible-escaped"),
    pytest.param("plain-é-名前-✓", "plain-é-名前-✓", id="printable-unicode-kept"),
    pytest.param("\x00" * 300, ("\\x00" * 50)[: BOUND - 1] + "…", id="escapes-bounded-too"),
]


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize(("value", "stored"), BOUNDED_TEXT)
async def test_every_text_field_is_bounded_before_it_is_recorded(
    writer: AuditWriter,
    sessions: async_sessionmaker[AsyncSession],
    field: str,
    value: str,
    stored: str,
) -> None:
    await write(writer, [event(1, **{field: value}), event(2)])
    got = await rows(sessions)
    assert [r["request_id"] for r in got][1:] == ["r2"]
    assert got[0][field] == stored
    assert len(str(got[0][field])) <= BOUND
    assert writer.healthy
    report = await verify_chain(sessions)
    assert (report.ok, report.checked) == (True, 2)


async def test_numbers_are_kept_within_what_the_store_takes(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    wild = event(1, status=2**40, bytes_in=2**70, bytes_out=-(2**70), latency_ms=float("nan"))
    await write(writer, [wild, event(2)])
    first = (await rows(sessions))[0]
    assert (first["status"], first["bytes_in"], first["bytes_out"], first["latency_ms"]) == (
        2**31 - 1,
        2**63 - 1,
        -(2**63) + 1,
        0.0,
    )
    assert (await verify_chain(sessions)).ok


async def test_detail_is_bounded(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    detail = {
        "path": "/p" * 100_000,
        "k" * 500: "key too long",
        "ctl": "a\x00b",
        "many": list(range(1000)),
        "deep": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
        "big": 10**100,
        "nan": float("inf"),
    }
    await write(writer, [event(1, detail=detail)])
    stored = (await rows(sessions))[0]["detail"]
    loaded = json.loads(stored) if isinstance(stored, str) else stored
    assert isinstance(loaded, dict)
    assert len(json.dumps(loaded)) < 8 * 1024
    assert len(loaded["path"]) <= 1000
    assert loaded["ctl"] == "a\\x00b"
    assert all(len(k) <= 64 for k in loaded)
    assert len(loaded["many"]) <= 64
    assert loaded["nan"] == "inf"
    assert (await verify_chain(sessions)).ok


# -- a record the store refuses ---------------------------------------------------------------


async def refuse(engine: AsyncEngine, column: str, value: str) -> None:
    """Make the store itself refuse a row whose `column` is `value` (a genuine data error)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.exec_driver_sql(
                f"CREATE TRIGGER refuse_{column} BEFORE INSERT ON audit_records"
                f" WHEN NEW.{column} = '{value}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            await conn.exec_driver_sql(
                f"ALTER TABLE audit_records ADD CONSTRAINT refuse_{column}"
                f" CHECK ({column} <> '{value}')"
            )


def batch_with(poison: AuditEvent) -> list[AuditEvent]:
    return [event(0), event(1), event(2), poison, event(4), event(5), event(6)]


async def assert_isolated(
    writer: AuditWriter,
    sessions: async_sessionmaker[AsyncSession],
    poison: AuditEvent,
    *,
    stand_in: bool,
) -> dict[str, object] | None:
    """Checks the rest was written in order and the writer goes on; returns the stand-in."""
    got = await rows(sessions)
    expected = ["r0", "r1", "r2", *(["r3"] if stand_in else []), "r4", "r5", "r6"]
    assert [r["request_id"] for r in got] == expected
    assert [r["id"] for r in got] == list(range(1, len(expected) + 1))
    assert writer.healthy
    report = await verify_chain(sessions)
    assert (report.ok, report.checked) == (True, len(expected))
    # The writer goes on with the next batch.
    assert writer.record_nowait(event(7))
    assert await writer.flush(wait_s=WAIT)
    after = await rows(sessions)
    assert after[-1]["request_id"] == "r7"
    assert (await verify_chain(sessions)).ok
    if not stand_in:
        return None
    standin = got[3]
    assert standin["reason"] == UNSTORABLE
    assert (standin["time"], standin["lane"], standin["action"], standin["decision"]) == (
        pytest.approx(poison.time),
        poison.lane,
        poison.action,
        poison.decision,
    )
    for name in ("actor", "lane", "action", "target", "decision", "reason", "request_id"):
        value = str(standin[name])
        assert value.isascii(), (name, value)
        assert value.isprintable(), (name, value)
    return standin


async def test_a_refused_record_gets_a_stand_in_and_the_rest_is_written_in_order(
    writer: AuditWriter, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await refuse(engine, "reason", "poison")
    poison = event(3, reason="poison")
    await write(writer, batch_with(poison))
    standin = await assert_isolated(writer, sessions, poison, stand_in=True)
    assert standin is not None
    assert (standin["actor"], standin["target"]) == ("actor-3", "plugin-3")


async def test_a_record_whose_stand_in_is_refused_too_is_logged_and_skipped(
    writer: AuditWriter,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await refuse(engine, "action", "poison")  # the stand-in keeps the action: refused again
    poison = event(3, action="poison", actor="secret-actor", target="secret-target")
    with caplog.at_level(logging.WARNING, logger="vivified.audit"):
        await write(writer, batch_with(poison))
    await assert_isolated(writer, sessions, poison, stand_in=False)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "skipped" in message
    assert "action=poison" in message
    assert "secret-actor" not in message
    assert "secret-target" not in message
    assert errors[0].exc_info is None  # no traceback: it could carry the refused values


POISON_VALUES = [
    pytest.param({"target": "nul\x00byte"}, "postgresql", "nul?byte", id="nul-in-target"),
    pytest.param({"actor": "lone\ud800"}, None, "lone?", id="lone-surrogate-in-actor"),
    pytest.param({"bytes_in": 2**70}, None, None, id="bigint-overflow"),
]


@pytest.mark.parametrize(("changes", "only_on", "safe"), POISON_VALUES)
async def test_a_value_the_driver_refuses_is_isolated_when_bounding_is_bypassed(
    writer: AuditWriter,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, object],
    only_on: str | None,
    safe: str | None,
) -> None:
    if only_on is not None and engine.dialect.name != only_on:
        pytest.skip(f"only {only_on} refuses this value")
    # The intake would have made the value safe: skip it to reach the store with the poison.
    monkeypatch.setattr("vivified.registry.audit.writer.bound_event", lambda e: e, raising=False)
    poison = event(3, **changes)
    await write(writer, batch_with(poison))
    standin = await assert_isolated(writer, sessions, poison, stand_in=True)
    assert standin is not None
    if safe is not None:
        (field,) = changes
        assert standin[field] == safe
