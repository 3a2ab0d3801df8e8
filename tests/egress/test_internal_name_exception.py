"""Internal names an admin mapped: allowlisted by the admin only, audited as an exception, and
reachable through a real egress proxy while `host_overrides` maps them (issue 23, point 5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select
from support.egress import (
    Egress,
    Upstreams,
    _setup_db,
    egress_document,
    free_port,
    raw_exchange,
    start_egress,
)

from vivified.config.config_service import ConfigService
from vivified.config.documents import ConfigError
from vivified.registry.audit.writer import AuditWriter
from vivified.registry.store.engine import create_engine, session_factory
from vivified.registry.store.snapshot import SnapshotHolder
from vivified.registry.store.tables import AuditRecord, ConfigRevision

MAPPED = {"svc.internal": "127.0.0.1", "printer.local": "127.0.0.1", "database": "127.0.0.1"}


@dataclass
class Admin:
    """The config service over a real SQLite registry, with what it writes to."""

    svc: ConfigService
    sessions: async_sessionmaker[AsyncSession]
    audit: AuditWriter


@pytest.fixture
async def service(tmp_path: Path, upstreams: Upstreams) -> AsyncIterator[Admin]:
    doc = egress_document(upstreams, free_port())
    doc["host_overrides"] = {**doc["host_overrides"], **MAPPED}
    await _setup_db(tmp_path, doc)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path.resolve() / 'registry.db'}")
    sessions = session_factory(engine)
    holder = SnapshotHolder(sessions)
    audit = AuditWriter(sessions, flush_interval=0.01)
    try:
        await holder.reload()
        audit.start()
        svc = ConfigService(sessions, holder, audit, refusal_status=lambda _error: 422)
        yield Admin(svc, sessions, audit)
    finally:
        await audit.stop()
        await holder.stop()
        await engine.dispose()


async def _put(admin: Admin, domains: list[str], comment: str = "") -> Any:
    return await admin.svc.put_allowlist(
        "alpha",
        {"domains": domains, "mode": "enforce"},
        expected=None,
        actor="admin:root",
        comment=comment,
        request_id="req-1",
    )


async def _records(admin: Admin) -> tuple[list[Any], list[Any]]:
    await admin.audit.flush()
    async with admin.sessions() as s:
        revs = (await s.execute(select(ConfigRevision).order_by(ConfigRevision.id))).scalars()
        audit = (
            await s.execute(
                select(AuditRecord)
                .where(AuditRecord.action == "allowlist_update")
                .order_by(AuditRecord.id)
            )
        ).scalars()
        return list(revs), list(audit)


async def test_admin_may_allowlist_mapped_internal_names(service: Admin) -> None:
    got = await _put(service, ["api.example.com", "svc.internal", "DATABASE"], "partner VPN")
    assert got.value["domains"] == ["api.example.com", "svc.internal", "database"]
    revs, audit = await _records(service)
    assert revs[-1].comment == "partner VPN [internal_name_exception: svc.internal, database]"
    assert audit[-1].decision == "allow"
    assert audit[-1].reason == "internal_name_exception"
    detail = (
        audit[-1].detail if isinstance(audit[-1].detail, dict) else json.loads(audit[-1].detail)
    )
    assert detail["internal_name_exception"] == ["svc.internal", "database"]


async def test_public_names_are_recorded_as_a_plain_change(service: Admin) -> None:
    await _put(service, ["api.example.com"])
    revs, audit = await _records(service)
    assert revs[-1].comment == ""
    assert audit[-1].reason == "changed"


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("other.internal", id="unmapped"),
        pytest.param("*.internal", id="wildcard"),
        pytest.param("*.svc.internal", id="wildcard-of-mapped"),
        pytest.param("localhost", id="localhost-unmapped"),
    ],
)
async def test_unmapped_internal_names_stay_refused(service: Admin, entry: str) -> None:
    before = await service.svc.get_allowlist("alpha")
    with pytest.raises(ConfigError) as caught:
        await _put(service, ["api.example.com", entry])
    assert caught.value.code == "invalid_allowlist"
    errors = caught.value.errors or []
    assert [e["code"] for e in errors] == ["internal_name"]
    assert errors[0]["path"] == "/domains/1"
    assert "host_overrides" in errors[0]["message"]
    assert (await service.svc.get_allowlist("alpha")).value == before.value


def test_manifests_still_may_not_declare_internal_names() -> None:
    from vivified.policy.domains import check_domain_entry

    # manifest validation passes no mapping: the exception is the admin's alone
    assert [p.code for p in check_domain_entry("svc.internal").problems] == ["internal_name"]


# --- through a real egress proxy ---------------------------------------------------------------


@pytest.fixture(scope="module")
def egress_internal(
    tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams
) -> Iterator[Egress]:
    data = Path(tmp_path_factory.mktemp("egress-internal"))
    eg = start_egress(data, upstreams)
    doc = egress_document(upstreams, eg.gateway_port)
    doc["host_overrides"] = {**doc["host_overrides"], **MAPPED}
    eg.update(doc=doc, plugin=("alpha", {"egress_domains": ["api.example.com", "svc.internal"]}))
    yield eg
    eg.proc.stop()


def _get(eg: Egress, host: str) -> tuple[int, dict[str, str], bytes]:
    port = eg.up.http_port
    req = (
        f"GET http://{host}:{port}/in HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Proxy-Authorization: {eg.auth_header()}\r\n\r\n"
    ).encode()
    status, headers, body, sock = raw_exchange(eg.port, req)
    sock.close()
    return status, headers, body


def _eventually(eg: Egress, host: str, status: int) -> tuple[int, dict[str, str], bytes]:
    import time

    deadline = time.monotonic() + 10  # the proxy reloads its snapshot every 0.5 s
    got = _get(eg, host)
    while got[0] != status and time.monotonic() < deadline:
        time.sleep(0.1)
        got = _get(eg, host)
    return got


def test_mapped_internal_name_is_reachable_then_refused_once_unmapped(
    egress_internal: Egress,
) -> None:
    status, _headers, body = _eventually(egress_internal, "svc.internal", 200)
    assert status == 200
    assert json.loads(body)["path"] == "/in"
    doc = egress_document(egress_internal.up, egress_internal.gateway_port)  # mapping removed
    egress_internal.update(doc=doc)
    status, headers, body = _eventually(egress_internal, "svc.internal", 403)
    assert (status, headers["x-vivified-egress-error"]) == (403, "internal_name_unmapped")
    assert json.loads(body)["reason"] == "internal_name_unmapped"
