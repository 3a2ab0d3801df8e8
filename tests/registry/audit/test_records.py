"""`record_action`, the one audit-record helper (keyword-only), and `refusals_recorded`, which
records a domain error as a denied action with the status its caller numbers it with."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vivified.registry.audit.query import query_audit
from vivified.registry.audit.records import record_action, refusals_recorded
from vivified.registry.audit.writer import AuditWriter
from vivified.registry.errors import DomainError
from vivified.registry.identity.admins import AdminError
from vivified.registry.plugins.reregistration import RegistryError


@pytest.fixture
async def writer(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AuditWriter]:
    w = AuditWriter(sessions, queue_size=50, batch_size=20, flush_interval=0.01)
    w.start()
    yield w
    await w.stop()


async def records(writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]) -> list[Any]:
    assert await writer.flush()
    items, _ = await query_audit(sessions, limit=100)
    return items


def test_every_argument_is_by_keyword() -> None:
    params = list(inspect.signature(record_action).parameters.values())[1:]
    assert params
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    with pytest.raises(TypeError):
        record_action(None, "admin", "act")  # type: ignore[arg-type, misc]


async def test_record_action_writes_every_field(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await record_action(
        writer,
        lane="registry",
        action="enable",
        actor="admin:ops",
        target="alpha",
        decision="allow",
        reason="enabled",
        request_id="rid-1",
        status=200,
        started=time.perf_counter() - 0.05,
        detail={"version": 3},
    )
    [got] = await records(writer, sessions)
    assert (got["lane"], got["action"], got["actor"], got["target"]) == (
        "registry",
        "enable",
        "admin:ops",
        "alpha",
    )
    assert (got["decision"], got["reason"], got["request_id"], got["status"]) == (
        "allow",
        "enabled",
        "rid-1",
        200,
    )
    assert got["detail"] == {"version": 3}
    assert got["latency_ms"] >= 50


def forbidden_only(exc: DomainError) -> int | None:
    """Number a refusal of power 403; leave anything else unrecorded."""
    return 403 if exc.code == "scope_not_held" else None


REFUSALS = [
    pytest.param(
        AdminError("scope_not_held", "no", subject="admin:bob"),
        ("deny", "scope_not_held", 403, "admin:bob"),
        id="recorded-naming-its-subject",
    ),
    pytest.param(
        RegistryError("scope_not_held", "no"),
        ("deny", "scope_not_held", 403, "tok-1"),
        id="recorded-naming-the-target",
    ),
    pytest.param(AdminError("not_found", "no such token"), None, id="numbered-none-not-recorded"),
]


@pytest.mark.parametrize(("error", "expected"), REFUSALS)
async def test_refusals_recorded(
    writer: AuditWriter,
    sessions: async_sessionmaker[AsyncSession],
    error: DomainError,
    expected: tuple[str, str, int, str] | None,
) -> None:
    with pytest.raises(type(error)) as raised:
        async with refusals_recorded(
            writer,
            forbidden_only,
            lane="admin",
            action="admin_token_revoke",
            actor="admin:alice",
            target="tok-1",
            request_id="rid-2",
        ):
            raise error
    assert raised.value is error  # the gateway still answers it
    got = [
        (r["decision"], r["reason"], r["status"], r["target"])
        for r in await records(writer, sessions)
    ]
    assert got == ([expected] if expected else [])


async def test_nothing_raised_nothing_recorded(
    writer: AuditWriter, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with refusals_recorded(
        writer, forbidden_only, lane="admin", action="a", actor="b", target="c", request_id="d"
    ):
        pass
    assert await records(writer, sessions) == []
