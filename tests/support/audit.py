"""Read the audit trail over HTTP, and wait (with a bound) for records the writer still holds;
check the chain with `vivified audit verify`.

The gateway writes audit records from a queue, a moment after it answers the request that
made them. A test that wants a record polls `GET /admin/audit` until it is there, within a
bound, instead of using `GET /admin/audit/verify` (which flushes the writer) as a barrier.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from support.procs import admin_headers
from vivified.policy.audit_levels import COMPLETE_FIELDS, DETAILED_FIELDS

Record = dict[str, Any]

# A test of what each audit level records: `level`, and the fields it adds to a basic record
# (None: no record at all). The same four cases on every lane.
EACH_LEVEL = pytest.mark.parametrize(
    ("level", "added"),
    [
        pytest.param("none", None, id="none-no-record"),
        pytest.param("basic", frozenset(), id="basic-as-before"),
        pytest.param("detailed", DETAILED_FIELDS, id="detailed"),
        pytest.param("complete", COMPLETE_FIELDS, id="complete"),
    ],
)


def audit_records(
    client: httpx.Client, headers: Mapping[str, str] | None = None, **filters: str
) -> list[Record]:
    """Every stored record matching the query `filters`, newest first (all pages)."""
    items: list[Record] = []
    cursor = ""
    while True:
        params = {**filters, "limit": "1000"}
        if cursor:
            params["cursor"] = cursor
        r = client.get(
            "/admin/audit",
            params=params,
            headers=dict(headers) if headers is not None else admin_headers(),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"] or ""
        if not cursor:
            return items


def wait_for_audit(
    client: httpx.Client,
    headers: Mapping[str, str] | None = None,
    *,
    count: int = 1,
    timeout: float = 10.0,
    where: Callable[[Record], bool] | None = None,
    **filters: str,
) -> list[Record]:
    """The records matching `filters` (and `where`), once at least `count` of them are stored.

    Polls `GET /admin/audit` every 50 ms; fails the test after `timeout` seconds, naming what
    it found. Callers assert the exact records they expect on the returned list.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in audit_records(client, headers, **filters) if where is None or where(r)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{count} audit record(s) matching {filters} expected within {timeout}s, "
                f"found {len(found)}: {found[:5]}"
            )
        time.sleep(0.05)


def audit_barrier(client: httpx.Client, timeout: float = 10.0) -> None:
    """Return once every record the gateway queued before this call is stored.

    The writer drains its queue in order, so this makes one refused registration of a fresh
    id (recorded as `claimed:<id>`) and waits, bounded, until that record is stored.
    """
    marker = f"barrier-{uuid.uuid4().hex}"
    request = client.build_request("POST", "/plugins/register", json={"id": marker})
    request.headers.pop("Authorization", None)  # no credential, whatever the client sends
    r = client.send(request)
    assert (r.status_code, r.json()["reason"]) == (401, "missing_token"), r.text
    wait_for_audit(client, action="register", target=f"claimed:{marker}", timeout=timeout)


def assert_chain_ok(env: Mapping[str, str]) -> None:
    """`vivified audit verify` with a deployment's settings (`env`) finds the chain intact."""
    verify = subprocess.run(
        [sys.executable, "-m", "vivified", "audit", "verify"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
    assert "audit chain OK" in verify.stdout
