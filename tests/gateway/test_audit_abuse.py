"""Request-derived strings cannot wedge or bloat the audit trail (security issue 14, item 1).

An unauthenticated caller chooses the registration `id` and the operator-lane service name;
before any credential is checked they are recorded only as `claimed:<first 64 chars>…`, and
every text the trail keeps is bounded, so no record is refused by the store (PostgreSQL's
btree index rows stop at 2,704 bytes) and nothing behind it waits forever.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from support.audit import audit_barrier, wait_for_audit
from support.procs import CoreProcess, admin_headers

CLAIMED = "claimed:"
BOUND = 200  # at most this many characters in any text column of a record
WAIT = 20.0  # seconds any single expectation may take


def claimed(name: str) -> str:
    """The documented convention: `claimed:` + the first 64 characters, `…` when cut."""
    return CLAIMED + name[:64] + ("…" if len(name) > 64 else "")


def until(check: Callable[[], Any], seconds: float = WAIT) -> Any:
    """`check()`'s first truthy answer, polled within a bound."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def audit(c: httpx.Client, **params: str) -> list[dict[str, Any]]:
    r = c.get("/admin/audit", params={"limit": "500", **params}, headers=admin_headers())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def assert_problem(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["status"], body["reason"]) == (status, reason)
    assert "Traceback" not in r.text


def assert_bounded(record: dict[str, Any]) -> None:
    for name in ("actor", "lane", "action", "target", "decision", "reason", "request_id"):
        value = record[name]
        assert len(value) <= BOUND, (name, len(value))
        assert value.isprintable(), (name, value)


# An unauthenticated registration claims an id; each credential is refused before the id is
# looked at, so the trail keeps only the claim, truncated.
UNAUTHENTICATED = [
    ({}, "missing_token"),
    (
        {"Authorization": "Bearer not-a-registration-token-0123456789abcdef"},
        "invalid_registration_token",
    ),
    ({"Authorization": "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"}, "wrong_token_type"),
]


@pytest.fixture
def gateway_on_db(db_url: str, tmp_path: Path) -> Iterator[CoreProcess]:
    """A gateway on a fresh registry: a SQLite file, or a fresh PostgreSQL database."""
    gw = CoreProcess("gateway", tmp_path / "gw", {"VIVIFIED_DATABASE_URL": db_url}).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_a_huge_unauthenticated_registration_id_cannot_wedge_the_audit_trail(
    gateway_on_db: CoreProcess,
) -> None:
    with httpx.Client(base_url=gateway_on_db.url, timeout=30, trust_env=False) as c:
        ids = []
        for headers, reason in UNAUTHENTICATED:
            pid = secrets.token_hex(4000)  # 8,000 hex characters: no index row takes it
            ids.append(pid)
            r = c.post("/plugins/register", json={"id": pid}, headers=headers)
            assert_problem(r, 401, reason)
        # The next admin action is recorded and findable: nothing waits behind the claims.
        made = c.post(
            "/admin/registration-tokens",
            json={"uses": 1, "plugin_id": "after-the-abuse"},
            headers=admin_headers(),
        )
        assert made.status_code == 201, made.text
        found = until(
            lambda: audit(c, action="registration_token_create", target="after-the-abuse")
        )
        assert [(x["decision"], x["reason"], x["status"]) for x in found] == [
            ("allow", "created", 201)
        ]
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"]["audit"] == "ok"
        denied = audit(c, action="register", decision="deny")
        assert [(x["actor"], x["target"], x["reason"], x["status"]) for x in denied] == [
            ("anonymous", claimed(pid), reason, 401)
            for pid, (_, reason) in reversed(list(zip(ids, UNAUTHENTICATED, strict=True)))
        ]
        for record in denied:
            assert_bounded(record)
        verify = c.get("/admin/audit/verify", headers=admin_headers()).json()
        assert verify["ok"] is True, verify


def _registry_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("registry.db*"))


def test_megabyte_ids_do_not_grow_the_sqlite_registry(
    client: httpx.Client, gateway: CoreProcess
) -> None:
    audit_barrier(client)  # what earlier tests queued is stored before the baseline
    before = _registry_bytes(gateway.data_dir)
    ids = [secrets.token_hex(500_000) for _ in range(3)]  # 1,000,000 characters each
    for pid in ids:
        assert_problem(client.post("/plugins/register", json={"id": pid}), 401, "missing_token")
    for pid in ids:
        (record,) = wait_for_audit(client, action="register", target=claimed(pid))
        assert_bounded(record)
    grown = _registry_bytes(gateway.data_dir) - before
    assert grown < 512 * 1024, f"the registry grew by {grown} bytes"


def _quoted(service: str) -> str:
    return quote(service, safe="")


OPERATOR_CLAIMS = [
    pytest.param(
        "s" + secrets.token_hex(3000),
        {"Authorization": "Bearer not-a-plugin-token"},
        "malformed_token",
        None,
        id="huge-service-bad-token",
    ),
    pytest.param(
        "n" + secrets.token_hex(3000), {}, "missing_token", None, id="huge-service-no-token"
    ),
    pytest.param(
        "abc\u200fdef\u202e",
        {"Authorization": "Bearer not-a-plugin-token"},
        "malformed_token",
        CLAIMED + "abc\\u200fdef\\u202e",
        id="invisible-characters-escaped",
    ),
]


@pytest.mark.parametrize(("service", "headers", "reason", "target"), OPERATOR_CLAIMS)
def test_the_operator_lane_records_an_unauthenticated_service_name_as_a_bounded_claim(
    client: httpx.Client,
    service: str,
    headers: dict[str, str],
    reason: str,
    target: str | None,
) -> None:
    r = client.get(f"/{_quoted(service)}/items/1", headers=headers)
    assert_problem(r, 401, reason)
    expected = target or claimed(service)
    found = until(lambda: audit(client, lane="operator", target=expected))
    assert [(x["actor"], x["decision"], x["reason"], x["status"]) for x in found] == [
        ("anonymous", "deny", reason, 401)
    ]
    assert_bounded(found[0])
    assert client.get("/readyz").json()["checks"]["audit"] == "ok"
