"""Audit levels on the proxy lane (the plugin alone decides): a real egress process and real
HTTPS upstreams; each level's request record holds exactly its fields, bodies hashed as they
stream, header names only."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import httpx
from support.audit import EACH_LEVEL
from support.egress import Egress, connect

from vivified.policy.audit_levels import COMPLETE_FIELDS

BASE = {"host", "port", "mode", "method", "path"}  # and others of the basic record


def client(eg: Egress) -> httpx.Client:
    return httpx.Client(
        proxy=eg.proxy_url("alpha"), verify=eg.ssl_context(), timeout=10, trust_env=False
    )


def set_level(eg: Egress, level: str) -> None:
    manifest = {
        "id": "alpha",
        "traits": ["external_service"],
        "security": {"data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": level},
    }
    eg.update(plugin=("alpha", {"manifest": manifest}))


def barrier(eg: Egress) -> None:
    """A refused CONNECT, recorded after everything the proxy did before it."""
    host = f"b{uuid.uuid4().hex[:12]}.example.net"
    status, _headers, _body, sock = connect(eg, f"{host}:443")
    sock.close()
    assert status == 403
    deadline = time.monotonic() + 10
    while not any(r.target == f"{host}:443" for r in eg.audit_rows()):
        assert time.monotonic() < deadline, "barrier record not written"
        time.sleep(0.05)


def request_record(eg: Egress, path: str) -> Any | None:
    rows = [r for r in eg.audit_rows() if r.action == "request" and r.detail.get("path") == path]
    return rows[-1] if rows else None


def fetch(eg: Egress, url_path: str) -> httpx.Response:
    """GET through the proxy."""
    with client(eg) as c:
        return c.get(f"https://files.example.org:{eg.up.https_port}{url_path}")


def level_fields(detail: dict[str, Any]) -> set[str]:
    """The level's own fields of a record; the basic record's fields must all be there."""
    assert set(detail) >= BASE, detail
    return set(detail) & COMPLETE_FIELDS


@EACH_LEVEL
def test_each_level_records_exactly_its_fields(
    fresh_egress: Egress, level: str, added: frozenset[str] | None
) -> None:
    eg = fresh_egress
    set_level(eg, level)
    want = added
    deadline = time.monotonic() + 15
    while True:  # the egress reloads its snapshot every 0.5 s: poll until the level is in force
        r = fetch(eg, "/sized?n=10")
        assert r.status_code == 200
        barrier(eg)
        rows = [x for x in eg.audit_rows() if x.action == "request"]
        last = rows[-1] if rows else None
        count = len(rows)
        if want is None:
            r = fetch(eg, "/sized?n=10")
            barrier(eg)
            if len([x for x in eg.audit_rows() if x.action == "request"]) == count:
                break
        elif last is not None and level_fields(last.detail) == want:
            break
        assert time.monotonic() < deadline, f"level {level} not in force: {last and last.detail}"
    if want is None:  # and a refusal is still recorded: the barrier's CONNECT
        assert any(x.decision == "deny" for x in eg.audit_rows())
        return
    for path, body in (("/sized?n=100", b"y" * 100), ("/big?n=900", b"x" * 900)):
        r = fetch(eg, path)
        assert (r.status_code, r.content) == (200, body)
        barrier(eg)
        rec = [x for x in eg.audit_rows() if x.action == "request"][-1]
        assert rec.actor == "alpha"
        assert level_fields(rec.detail) == want, path
        if added:
            assert rec.detail["response_size"] == len(body)
            assert rec.detail["response_content_type"] == "text/plain"
            assert rec.detail["params"] == []
        if "response_sha256" in added:
            assert rec.detail["response_sha256"] == hashlib.sha256(body).hexdigest()
            assert rec.detail["request_sha256"] == hashlib.sha256(b"").hexdigest()
            assert "host" in rec.detail["request_headers"]
            assert "content-type" in rec.detail["response_headers"]
