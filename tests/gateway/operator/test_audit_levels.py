"""Audit levels on the Operator API lane: each level records exactly its fields; `complete`
hashes bodies while they stream (bounded memory) — a real gateway and a real upstream app."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.audit import EACH_LEVEL, audit_barrier, wait_for_audit
from support.manifests import simple
from support.procs import CoreProcess, register, registration_token
from support.upstream import serve_in_thread

from vivified.policy.audit_levels import COMPLETE_FIELDS

MiB = 1024 * 1024
LEVELS = ("none", "basic", "detailed", "complete")
BASIC_DETAIL = {"route"}
REPLY = b'{"stored":true}'


async def store(request: Request) -> Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return Response(
        REPLY,
        media_type="application/json",
        headers={"x-size": str(size), "x-sha256": digest.hexdigest(), "x-secret": "s3cr3t-value"},
    )


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def manifest(pid: str, level: str, url: str, deps: list[str]) -> dict[str, Any]:
    return simple(
        pid,
        traits=["reports"],
        base_url=url,
        dependencies=deps,
        endpoints={"health": "/health", "items": "/api/items/{item_id}"},
        compliance={"hipaa_controls": [], "audit_level": level},
    )


@dataclass
class Rig:
    gw: CoreProcess
    client: httpx.Client
    tokens: dict[str, str]

    def call(self, caller: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[caller]}", **kw.pop("headers", {})}
        return self.client.post(path, headers=headers, **kw)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    env = {"VIVIFIED_MAX_BODY_BYTES": str(256 * MiB), "VIVIFIED_UPSTREAM_TIMEOUT": "30"}
    gw = CoreProcess("gateway", Path(tmp_path_factory.mktemp("levels")), env).start()
    app = Starlette(
        routes=[
            Route("/api/items/{item_id}", store, methods=["POST"]),
            Route("/health", health),
        ]
    )
    try:
        with (
            serve_in_thread(app) as url,
            httpx.Client(base_url=gw.url, timeout=60, trust_env=False) as c,
        ):
            tokens: dict[str, str] = {}
            for level in LEVELS:
                for m in (
                    manifest(f"t-{level}", level, url, []),
                    manifest(f"c-{level}", level, url, [f"t-{level}"]),
                ):
                    r = register(c, m, registration_token(c))
                    assert r.status_code == 201, r.text
                    tokens[m["id"]] = r.json()["token"]
            r = register(
                c, manifest("c-mixed", "basic", url, ["t-complete"]), registration_token(c)
            )
            assert r.status_code == 201, r.text
            tokens["c-mixed"] = r.json()["token"]
            yield Rig(gw, c, tokens)
    finally:
        gw.stop()


@EACH_LEVEL
def test_each_level_records_exactly_its_fields(
    rig: Rig, level: str, added: frozenset[str] | None
) -> None:
    body = b"x" * 1000
    r = rig.call(
        f"c-{level}", f"/t-{level}/items/7", content=body, headers={"content-type": "text/plain"}
    )
    assert r.status_code == 200, r.text
    rid = r.headers["x-vivified-request-id"]
    denied = rig.call(f"c-{level}", f"/t-{level}/nowhere", content=b"")
    assert denied.json()["reason"] == "endpoint_not_declared"
    denied_rid = denied.headers["x-vivified-request-id"]
    audit_barrier(rig.client)
    # a denial is recorded at every level, `none` included
    (refusal,) = wait_for_audit(
        rig.client, lane="operator", where=lambda rec: rec["request_id"] == denied_rid
    )
    assert (refusal["decision"], refusal["reason"]) == ("deny", "endpoint_not_declared")
    found = wait_for_audit(
        rig.client, lane="operator", where=lambda rec: rec["request_id"] == rid, count=0
    )
    if added is None:
        assert found == []
        return
    (rec,) = found
    assert (rec["decision"], rec["actor"], rec["target"]) == ("allow", f"c-{level}", f"t-{level}")
    detail = rec["detail"]
    assert set(detail) & COMPLETE_FIELDS == added  # exactly the level's own fields
    assert set(detail) >= BASIC_DETAIL  # and the basic record's
    if "params" in added:
        assert detail["params"] == ["item_id"]
        assert (detail["request_size"], detail["response_size"]) == (1000, len(REPLY))
        assert detail["request_content_type"] == "text/plain"
        assert detail["response_content_type"] == "application/json"
        assert detail["policy"] == {
            "decided_by": "dependency",
            "caller_traits": ["reports"],
            "target_traits": ["reports"],
            "classification": ["internal"],
            "grant": None,
        }
    if "request_sha256" in added:
        assert detail["request_sha256"] == hashlib.sha256(body).hexdigest()
        assert detail["response_sha256"] == hashlib.sha256(REPLY).hexdigest()
        assert "content-type" in detail["request_headers"]
        assert "authorization" in detail["request_headers"]
        assert {"x-secret", "x-sha256"} <= set(detail["response_headers"])
        assert "s3cr3t-value" not in str(detail)  # names only, never values


def test_the_strictest_party_decides(rig: Rig) -> None:
    r = rig.call("c-mixed", "/t-complete/items/1", content=b"abc")
    assert r.status_code == 200, r.text
    (rec,) = wait_for_audit(
        rig.client,
        lane="operator",
        where=lambda rec: rec["request_id"] == r.headers["x-vivified-request-id"],
    )
    assert set(rec["detail"]) & COMPLETE_FIELDS == COMPLETE_FIELDS
    assert rec["detail"]["request_sha256"] == hashlib.sha256(b"abc").hexdigest()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_100_mib_complete_body_streams_in_bounded_memory(rig: Rig) -> None:
    assert rig.gw.proc is not None
    pid = rig.gw.proc.pid
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    for _ in range(100):
        digest.update(block)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.02)

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield block

    base = rss_kib(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = rig.call(
            "c-complete",
            "/t-complete/items/big",
            content=chunks(),
            headers={"content-length": str(100 * MiB)},
        )
    finally:
        done.set()
        sampler.join(timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["x-sha256"] == digest.hexdigest()
    growth_mib = (peak[0] - base) / 1024
    assert growth_mib < 40, f"gateway RSS grew {growth_mib:.1f} MiB for a 100 MiB body"
    (rec,) = wait_for_audit(
        rig.client,
        lane="operator",
        where=lambda rec: rec["request_id"] == r.headers["x-vivified-request-id"],
        timeout=20,
    )
    assert rec["detail"]["request_sha256"] == digest.hexdigest()
    assert rec["detail"]["request_size"] == 100 * MiB
