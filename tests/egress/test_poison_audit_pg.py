"""A poison value in a claimed proxy id cannot wedge the audit writer (real egress, PostgreSQL),
and the egress audit trail's backlog is bounded (one task, back-pressure on new flows).

The egress process records the `Proxy-Authorization` plugin id of a refused request as a
claim (`claimed:<id>`, escaped, like the gateway does), a NUL byte included; a record the
store refuses anyway goes to the quarantine table, a stand-in takes its place in the chain,
the next records are written, and `/readyz` of a gateway on the same database counts it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.egress import Upstreams, basic, egress_document, free_port, raw_exchange
from support.procs import CoreProcess
from support.registry_seed import SeedPlugin, seed_registry
from support.waiting import eventually, eventually_async

from vivified.egress.live_state import AuditTrail
from vivified.egress.records import Outcome
from vivified.registry.audit.writer import AuditWriter


def _async_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.removeprefix("postgresql://")


async def _seed(url: str, doc: dict[str, Any]) -> str:
    """Schema, signing keys, one active plugin `alpha` and the egress document; its token."""
    from vivified.registry.store.engine import create_engine

    alpha = SeedPlugin("alpha", ["api.example.com"], manifest={"traits": ["external_service"]})
    tokens = await seed_registry(_async_url(url), doc, [alpha])
    engine = create_engine(_async_url(url))
    try:
        # The store itself refuses an audit row naming this claim (a genuine data error),
        # unless it is the writer's stand-in for it.
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "ALTER TABLE audit_records ADD CONSTRAINT refuse_poison"
                " CHECK (strpos(actor, 'poison') = 0 OR reason = 'unstorable_record')"
            )
        return tokens["alpha"]
    finally:
        await engine.dispose()


async def _query(url: str, sql: str) -> list[dict[str, Any]]:
    from vivified.registry.store.engine import create_engine

    engine = create_engine(_async_url(url))
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


async def _verify(url: str) -> tuple[bool, int]:
    from vivified.registry.audit.chain import verify_chain
    from vivified.registry.store.engine import create_engine, session_factory

    engine = create_engine(_async_url(url))
    try:
        report = await verify_chain(session_factory(engine))
        return report.ok, report.checked
    finally:
        await engine.dispose()


def query(url: str, sql: str) -> list[dict[str, Any]]:
    return asyncio.run(_query(url, sql))


class Stack:
    def __init__(self, url: str, egress: CoreProcess, token: str, up: Upstreams) -> None:
        self.url, self.egress, self.token, self.up = url, egress, token, up

    def get(self, auth: str) -> int:
        host = f"api.example.com:{self.up.http_port}"
        request = (
            f"GET http://{host}/hello HTTP/1.1\r\nHost: {host}\r\n"
            f"Proxy-Authorization: {auth}\r\nConnection: close\r\n\r\n"
        ).encode()
        status, _headers, _body, sock = raw_exchange(self.egress.port, request)
        sock.close()
        return status

    def egress_rows(self) -> list[dict[str, Any]]:
        return query(self.url, "SELECT * FROM audit_records WHERE lane = 'egress' ORDER BY id")


@pytest.fixture
def stack(pg_database: str, tmp_path: Path, upstreams: Upstreams) -> Iterator[Stack]:
    token = asyncio.run(_seed(pg_database, egress_document(upstreams, free_port())))
    proc = CoreProcess(
        "egress",
        tmp_path / "egress",
        env={
            "VIVIFIED_DATABASE_URL": pg_database,
            "VIVIFIED_EGRESS_UPSTREAM_CA": str(upstreams.ca_file),
            "VIVIFIED_UPSTREAM_TIMEOUT": "3",
            "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01",
        },
    ).start()
    try:
        yield Stack(pg_database, proc, token, upstreams)
    finally:
        proc.stop()


@pytest.mark.postgres
def test_a_nul_in_a_claimed_proxy_id_is_recorded_as_an_escaped_claim(stack: Stack) -> None:
    assert stack.get(basic("ev\x00il", "not-a-token")) == 407
    assert stack.get(basic("alpha", stack.token)) == 200
    rows = eventually(lambda: len(stack.egress_rows()) >= 2 and stack.egress_rows(), what="rows")
    refused, allowed = rows[-2], rows[-1]
    # a claim, never a plugin's name; the NUL escaped, so PostgreSQL takes it
    assert (refused["actor"], refused["decision"], refused["status"]) == (
        "claimed:ev\\x00il",
        "deny",
        407,
    )
    assert (allowed["actor"], allowed["decision"], allowed["status"]) == ("alpha", "allow", 200)
    assert query(stack.url, "SELECT count(*) AS n FROM audit_quarantine") == [{"n": 0}]
    assert asyncio.run(_verify(stack.url))[0]


@pytest.mark.postgres
def test_a_record_the_store_refuses_is_quarantined_and_the_next_ones_are_written(
    stack: Stack, tmp_path: Path
) -> None:
    assert stack.get(basic("poison\x00id", "not-a-token")) == 407
    assert stack.get(basic("alpha", stack.token)) == 200
    assert stack.get(basic("alpha", stack.token)) == 200

    def written() -> list[dict[str, Any]] | None:
        rows = stack.egress_rows()
        return rows if len(rows) >= 3 else None

    standin, first, second = eventually(written, what="three egress records")[-3:]
    assert standin["reason"] == "unstorable_record"
    assert standin["actor"] == "claimed:poison\\x00id"  # safe ASCII
    assert standin["status"] == 407
    (row,) = query(stack.url, "SELECT * FROM audit_quarantine")
    detail = (
        standin["detail"] if isinstance(standin["detail"], dict) else json.loads(standin["detail"])
    )
    assert detail["quarantine_id"] == row["id"]
    assert json.loads(row["record"])["actor"] == "claimed:poison\\x00id"
    assert row["refused"] == "sqlstate 23514"
    assert [first["actor"], second["actor"]] == ["alpha", "alpha"]
    assert asyncio.run(_verify(stack.url)) == (True, 3)
    log = stack.egress.log()
    assert "audit_quarantine id=" in log
    assert "poison" not in log  # the alert names the row, never the refused values

    gateway = CoreProcess(
        "gateway", tmp_path / "gateway", env={"VIVIFIED_DATABASE_URL": stack.url}
    ).start()
    try:
        ready = httpx.get(gateway.url + "/readyz", trust_env=False)
    finally:
        gateway.stop()
    assert ready.status_code == 200
    body = ready.json()
    assert (body["status"], body["quarantined"]) == ("ready", 1)  # an alert, still ready
    assert body["checks"]["database"] == "ok"


async def test_the_egress_audit_backlog_is_one_task_and_holds_new_flows_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    writer = AuditWriter(sessions, queue_size=4, batch_size=4, flush_interval=0)  # stalled
    trail = AuditTrail(writer, limit=8)
    tasks_before = len(asyncio.all_tasks())
    for i in range(200):  # a store that does not keep up: the writer's queue is full
        trail.record(Outcome("request", "alpha", "api.example.com", 443, request_id=f"r{i}"))
    assert len(asyncio.all_tasks()) - tasks_before == 1  # not one task per record
    assert trail.backlog == 196
    with pytest.raises(TimeoutError):  # new flows wait (PluginAuth awaits room())
        await asyncio.wait_for(trail.room(), 0.2)
    writer.start()
    try:
        await eventually_async(lambda: trail.backlog == 0, what="the backlog drained")
        await asyncio.wait_for(trail.room(), 5)
        assert await writer.flush(10)
    finally:
        await writer.stop()
    async with sessions() as s:
        ids = [
            r[0] for r in await s.execute(text("SELECT request_id FROM audit_records ORDER BY id"))
        ]
    assert ids == [f"r{i}" for i in range(200)]  # all of them, in order
    assert trail.tasks == 0
