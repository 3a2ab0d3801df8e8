"""The Operator API lane over real HTTP: a real gateway process and real upstream plugin apps.

The lane's registry is SQLite; the tests taking `any_lane` (grants, a forwarded call, the
admin's contract choice) also run on a second lane on a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from support.backends import BACKENDS, registry_env, registry_url
from support.manifests import seed, simple
from support.procs import (
    ADMIN_TOKEN,
    CoreProcess,
    admin_headers,
    enable,
    register,
    register_all,
    registration_token,
)
from support.upstream import serve_in_thread
from vivified_sdk.assertion import InvalidAssertion, verify_assertion
from websockets.sync.client import connect as ws_connect

MiB = 1024 * 1024
BODY_CAP = 96 * MiB
# The lane's read timeout also runs while a body is still being sent to the target: long
# enough that streaming ~100 MiB on a busy 2-core machine stays under it.
UPSTREAM_TIMEOUT = 5


@dataclass
class Upstream:
    """A plugin app that records what reached it."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    async def echo(self, request: Request) -> Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        record = {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": request.url.query,
            "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            "size": size,
            "sha256": digest.hexdigest(),
        }
        self.seen.append(record)
        return JSONResponse(
            record,
            headers={
                "Connection": "close, X-Secret",
                "X-Secret": "s",
                "X-Vivified-Request-Id": "forged-by-target",
            },
        )

    async def slow(self, _request: Request) -> Response:
        await asyncio.sleep(UPSTREAM_TIMEOUT + 3)  # part of the tests: past the lane's timeout
        return JSONResponse({"slow": True})

    async def big(self, request: Request) -> Response:
        size = int(request.path_params["size"])

        async def gen() -> Any:
            block = b"x" * MiB
            for _ in range(size // MiB):
                yield block

        return StreamingResponse(gen(), media_type="application/octet-stream")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/items/{id}", self.echo, methods=["GET", "POST", "PUT", "DELETE"]),
                Route("/api/items", self.echo, methods=["GET", "POST"]),
                Route("/api/upload", self.echo, methods=["POST", "PUT"]),
                Route("/api/slow", self.slow),
                Route("/api/big/{size}", self.big),
                Route("/api/{rest:path}", self.echo, methods=["GET", "POST"]),
                Route("/{rest:path}", self.echo, methods=["GET", "POST"]),
            ]
        )


ENDPOINTS = {
    "health": "/health",
    "item": "/api/items/{id}",
    "items": "/api/items",
    "upload": "/api/upload",
    "slow": "/api/slow",
    "big": "/api/big/{size}",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Lane:
    gw: CoreProcess
    up: Upstream
    tokens: dict[str, str]
    down_port: int
    up_url: str

    def call(self, caller: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[caller]}", **kw.pop("headers", {})}
        with httpx.Client(base_url=self.gw.url, timeout=30, trust_env=False) as c:
            return c.request(method, path, headers=headers, **kw)

    def audit(self, **query: str) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.gw.url, timeout=30, trust_env=False) as c:
            r = c.get(
                "/admin/audit",
                params={"lane": "operator", "limit": "1000", **query},
                headers=admin_headers(),
            )
            assert r.status_code == 200, r.text
            items: list[dict[str, Any]] = r.json()["items"]
            return items


@contextmanager
def _running_lane(data_dir: Path, registry: dict[str, str]) -> Iterator[Lane]:
    """A gateway with the module's plugins registered, on the given registry settings."""
    up = Upstream()
    env = {
        "VIVIFIED_UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
        "VIVIFIED_MAX_BODY_BYTES": str(BODY_CAP),
        "VIVIFIED_CIRCUIT_THRESHOLD": "3",
        "VIVIFIED_CIRCUIT_COOLDOWN": "1",
        "VIVIFIED_AUDIT_FLUSH_INTERVAL": "0.01",
        **registry,
    }
    gw = CoreProcess("gateway", data_dir, env).start()
    down_port = free_port()
    try:
        with (
            serve_in_thread(up.app()) as url,
            httpx.Client(base_url=gw.url, timeout=30, trust_env=False) as c,
        ):
            manifests = [
                simple("beta", base_url=url, endpoints=ENDPOINTS),
                simple("alpha", dependencies=["beta", "down", "pii-store"]),
                simple("gamma"),
                simple("burst", dependencies=["beta"]),
                simple("quitter", dependencies=["beta"]),
                simple("down", base_url=f"http://127.0.0.1:{down_port}", endpoints=ENDPOINTS),
                seed(id="pii-store", base_url=url, endpoints=ENDPOINTS, contracts=["StorePlugin"]),
                seed(id="pii-reader", dependencies=["pii-store"], contracts=["ReaderPlugin"]),
                simple("off", base_url=url, endpoints=ENDPOINTS),
            ]
            tokens = register_all(c, manifests)
            enable(c, "pii-store", "pii-reader")
            r = c.post("/plugins/off/disable", headers=admin_headers())
            assert r.status_code == 200, r.text
            yield Lane(gw, up, tokens, down_port, url)
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    """The module's lane, on SQLite (every test)."""
    with _running_lane(Path(tmp_path_factory.mktemp("lane")), {}) as running:
        yield running


@pytest.fixture(scope="module")
def pg_lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    """The same lane on a fresh PostgreSQL database (only the tests taking `any_lane`)."""
    with (
        registry_url("postgres") as url,
        _running_lane(Path(tmp_path_factory.mktemp("pg-lane")), registry_env(url)) as running,
    ):
        yield running


@pytest.fixture(params=BACKENDS)
def any_lane(request: pytest.FixtureRequest) -> Lane:
    """`lane` on SQLite, `pg_lane` on PostgreSQL: the registry-heavy tests run on both (grant
    create/use/delete, a forwarded call, the admin's contract choice) without doubling the
    module."""
    chosen: Lane = request.getfixturevalue("lane" if request.param == "sqlite" else "pg_lane")
    return chosen


def test_forwards_to_the_declared_endpoint_with_core_identity(any_lane: Lane) -> None:
    lane = any_lane
    r = lane.call("alpha", "GET", "/beta/items/42?q=1&page=2")
    assert r.status_code == 200, r.text
    seen = r.json()
    assert (seen["path"], seen["query"]) == ("/api/items/42", "q=1&page=2")
    headers = dict(seen["headers"])
    assert headers["x-vivified-caller"] == "alpha"
    # one request id, core's: the target's own claim is dropped
    assert r.headers.get_list("x-vivified-request-id") == [headers["x-vivified-request-id"]]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    jwks = httpx.get(lane.gw.url + "/.well-known/jwks.json", trust_env=False).json()
    claims = verify_assertion(
        headers["x-vivified-assertion"],
        jwks=jwks,
        audience="beta",
        method="GET",
        path="/api/items/42",
    )
    assert claims["sub"] == "alpha"
    assert claims["rid"] == r.headers["x-vivified-request-id"]
    assert claims["exp"] - claims["iat"] <= 60
    with pytest.raises(InvalidAssertion):
        verify_assertion(headers["x-vivified-assertion"], jwks=jwks, audience="gamma")


def test_spoofed_and_hop_by_hop_headers_never_reach_the_target(lane: Lane) -> None:
    spoofed = {
        "X-Vivified-Caller": "admin",
        "X-Vivified-Assertion": "forged",
        "X-Vivified-Anything": "x",
        "Forwarded": "for=6.6.6.6",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "6.6.6.6",
        "Cookie": "session=secret",
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "1",
        "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "TE": "trailers",
        "X-Kept": "yes",
    }
    r = lane.call("alpha", "GET", "/beta/items/1", headers=spoofed)
    assert r.status_code == 200, r.text
    names = [k for k, _ in r.json()["headers"]]
    values = dict(r.json()["headers"])
    for bad in (
        "forwarded",
        "x-real-ip",
        "cookie",
        "x-drop-me",
        "keep-alive",
        "proxy-authorization",
        "te",
        "x-vivified-anything",
        "authorization",
    ):
        assert bad not in names, bad
    assert names.count("x-vivified-caller") == 1
    assert values["x-vivified-caller"] == "alpha"
    assert names.count("x-forwarded-for") == 1
    assert values["x-forwarded-for"] == "127.0.0.1"
    assert values["x-forwarded-host"] != "evil.example"
    assert values["x-kept"] == "yes"
    # and the target's hop-by-hop response headers do not reach the caller
    assert "x-secret" not in r.headers


PATH_ATTACKS = [
    pytest.param("/beta/items/../../admin", "dot_segment", id="dot-dot"),
    pytest.param("/beta/items/%2e%2e/upload", "dot_segment", id="encoded-dot-dot"),
    pytest.param("/beta/items/%2E%2E/upload", "dot_segment", id="encoded-dot-dot-upper"),
    pytest.param("/beta/items/.%2e/upload", "dot_segment", id="half-encoded-dot-dot"),
    pytest.param("/beta/items/%252e%252e/upload", "dot_segment", id="double-encoded-dot-dot"),
    pytest.param("/beta/items/..%2fupload", "dot_segment", id="dot-dot-encoded-slash"),
    pytest.param("/beta/items/a%2fb", "encoded_slash", id="encoded-slash"),
    pytest.param("/beta/items/a%5cb", "encoded_slash", id="encoded-backslash"),
    pytest.param("/beta/items/a%252fb", "encoded_slash", id="double-encoded-slash"),
    pytest.param("/beta/items/a%00b", "control_character", id="nul"),
    pytest.param("/beta/items/a%0ab", "control_character", id="newline"),
    pytest.param("/beta/items/./1", "dot_segment", id="dot"),
    pytest.param("/beta//items/1", "empty_segment", id="empty-segment"),
    pytest.param("/beta/items/..;/upload", "dot_segment", id="dot-dot-semicolon"),
]


@pytest.mark.parametrize(("path", "reason"), PATH_ATTACKS)
def test_path_attacks_never_reach_the_target(lane: Lane, path: str, reason: str) -> None:
    before = len(lane.up.seen)
    with socket.create_connection(("127.0.0.1", lane.gw.port), timeout=10) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {lane.tokens['alpha']}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply[:300]
    assert b"\r\ncontent-type: application/problem+json" in head.lower(), head
    problem = json.loads(body)
    assert (problem["status"], problem["reason"]) == (400, reason), problem
    assert problem["detail"]
    assert len(lane.up.seen) == before


@pytest.mark.parametrize(
    ("caller", "method", "path", "status", "reason"),
    [
        pytest.param(
            "alpha", "GET", "/beta/admin/secret", 404, "endpoint_not_declared", id="undeclared-path"
        ),
        pytest.param(
            "alpha", "GET", "/beta/health", 404, "endpoint_not_declared", id="non-api-endpoint"
        ),
        pytest.param("alpha", "GET", "/nobody/items/1", 404, "unknown_target", id="unknown-target"),
        pytest.param(
            "gamma", "GET", "/beta/items/1", 403, "not_permitted", id="no-dependency-no-grant"
        ),
        pytest.param(
            "alpha", "GET", "/off/items/1", 503, "target_not_active", id="disabled-target"
        ),
        pytest.param(
            "alpha", "GET", "/pii-store/items/1", 403, "pii_trait_required", id="pii-gate"
        ),
        pytest.param(
            "alpha", "GET", "/report/items/1", 409, "ambiguous_contract", id="ambiguous-alias"
        ),
        pytest.param("alpha", "GET", "/plugins/items/1", 404, "not_found", id="reserved-route"),
    ],
)
def test_policy_refusals(
    lane: Lane, caller: str, method: str, path: str, status: int, reason: str
) -> None:
    before = len(lane.up.seen)
    r = lane.call(caller, method, path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["reason"] == reason
    if status == 503:
        assert int(r.headers["retry-after"]) >= 1
    assert len(lane.up.seen) == before


def test_a_phi_pii_caller_with_the_trait_passes_the_gate(lane: Lane) -> None:
    r = lane.call("pii-reader", "GET", "/pii-store/items/7")
    assert r.status_code == 200, r.text
    explain = httpx.get(
        lane.gw.url + "/admin/policy/explain",
        params={"caller": "alpha", "target": "pii-store", "method": "GET", "path": "/items/7"},
        headers=admin_headers(),
        trust_env=False,
    ).json()
    assert (explain["decision"], explain["reason"]) == ("deny", "pii_trait_required")


@pytest.mark.parametrize(
    ("headers", "path", "reason"),
    [
        pytest.param({}, "/beta/items/1", "missing_token", id="no-token"),
        pytest.param(
            {"Authorization": "Bearer nope"}, "/beta/items/1", "malformed_token", id="bad-token"
        ),
        pytest.param(
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            "/beta/items/1",
            "malformed_token",
            id="admin-token",
        ),
        pytest.param({}, "/beta/items/1?access_token=x", "token_in_query", id="query-token"),
    ],
)
def test_unauthenticated_calls_are_401(
    lane: Lane, headers: dict[str, str], path: str, reason: str
) -> None:
    r = httpx.get(lane.gw.url + path, headers=headers, trust_env=False)
    assert r.status_code == 401
    assert r.json()["reason"] == reason


def test_grants_open_the_lane_for_their_methods_and_paths(any_lane: Lane) -> None:
    lane = any_lane
    assert lane.call("gamma", "GET", "/beta/items/1").status_code == 403
    with httpx.Client(base_url=lane.gw.url, trust_env=False, headers=admin_headers()) as c:
        r = c.post(
            "/admin/grants",
            json={
                "caller": "gamma",
                "target": "beta",
                "methods": ["get"],
                "paths": ["/api/items/*"],
            },
        )
        assert r.status_code == 201, r.text
        grant = r.json()["id"]
        bad = c.post("/admin/grants", json={"caller": "ghost", "target": "beta", "x": 1})
        assert bad.status_code == 422
        assert {e["code"] for e in bad.json()["errors"]} == {"unknown_field", "unknown_plugin"}
        assert lane.call("gamma", "GET", "/beta/items/1").status_code == 200
        assert lane.call("gamma", "POST", "/beta/items/1").status_code == 403
        assert lane.call("gamma", "GET", "/beta/items").status_code == 403
        assert c.delete(f"/admin/grants/{grant}").status_code == 204
    assert lane.call("gamma", "GET", "/beta/items/1").status_code == 403


def test_admin_choice_resolves_an_ambiguous_contract(any_lane: Lane) -> None:
    lane = any_lane
    # Its own contract and plugins: the module's ReportPlugin stays ambiguous for the
    # `ambiguous-alias` refusal, whichever test runs first.
    with httpx.Client(base_url=lane.gw.url, trust_env=False, headers=admin_headers()) as c:
        for m in (
            simple(
                "ledger-a", base_url=lane.up_url, endpoints=ENDPOINTS, contracts=["LedgerPlugin"]
            ),
            simple(
                "ledger-b", base_url=lane.up_url, endpoints=ENDPOINTS, contracts=["LedgerPlugin"]
            ),
            simple("ledger-user", dependencies=["ledger-a"], contracts=["LedgerUserPlugin"]),
        ):
            reg = register(c, m, registration_token(c))
            assert reg.status_code == 201, reg.text
            lane.tokens[m["id"]] = reg.json()["token"]
        before = lane.call("ledger-user", "GET", "/ledger/items/5")
        assert (before.status_code, before.json()["reason"]) == (409, "ambiguous_contract")
        r = c.put("/admin/contracts/LedgerPlugin", json={"plugin": "ledger-a"})
        assert r.status_code == 200, r.text
        wrong = c.put("/admin/contracts/LedgerPlugin", json={"plugin": "pii-store"})
        assert wrong.status_code == 422, wrong.text
    r = lane.call("ledger-user", "GET", "/ledger/items/5")
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/api/items/5"


def test_upstream_down_502_then_circuit_opens_and_recovers(lane: Lane) -> None:
    reasons = [lane.call("alpha", "GET", "/down/items/1").json()["reason"] for _ in range(3)]
    assert reasons == ["upstream_refused"] * 3
    r = lane.call("alpha", "GET", "/down/items/1")
    assert (r.status_code, r.json()["reason"]) == (503, "circuit_open")
    assert int(r.headers["retry-after"]) >= 1
    import uvicorn  # the target comes back on its port

    up = Upstream()
    config = uvicorn.Config(
        up.app(), host="127.0.0.1", port=lane.down_port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    import threading

    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        status = 0
        while time.monotonic() < deadline:
            status = lane.call("alpha", "GET", "/down/items/1").status_code
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_slow_upstream_is_504(lane: Lane) -> None:
    r = lane.call("alpha", "GET", "/beta/slow")
    assert (r.status_code, r.json()["reason"]) == (504, "upstream_timeout")


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_bodies_stream_both_ways_in_bounded_memory(lane: Lane) -> None:
    assert lane.gw.proc is not None
    pid = lane.gw.proc.pid
    size = 80 * MiB
    block = os.urandom(MiB)
    expected = hashlib.sha256(block * (size // MiB)).hexdigest()
    before = vm_hwm_kib(pid)

    def chunks() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield block

    r = lane.call("alpha", "POST", "/beta/upload", content=chunks(), timeout=120)
    assert r.status_code == 200, r.text
    assert (r.json()["size"], r.json()["sha256"]) == (size, expected)
    r = lane.call("alpha", "GET", f"/beta/big/{size}", timeout=120)
    assert r.status_code == 200
    assert len(r.content) == size
    grown_mib = (vm_hwm_kib(pid) - before) / 1024
    assert grown_mib < 40, f"gateway peak memory grew {grown_mib:.0f} MiB for {size // MiB} MiB"


def raw_request(lane: Lane, head: str) -> bytes:
    with socket.create_connection(("127.0.0.1", lane.gw.port), timeout=10) as s:
        s.sendall(head.encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply:
                break
    return reply


def test_body_over_the_cap_is_413(lane: Lane) -> None:
    token = lane.tokens["alpha"]
    reply = raw_request(
        lane,
        f"POST /beta/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {BODY_CAP + 1}\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    block = b"y" * MiB

    def chunks() -> Iterator[bytes]:
        for _ in range(BODY_CAP // MiB + 2):
            yield block

    before = len(lane.up.seen)
    r = lane.call("alpha", "POST", "/beta/upload", content=chunks(), timeout=60)
    assert (r.status_code, r.json()["reason"]) == (413, "body_too_large")
    assert all(s["size"] <= BODY_CAP for s in lane.up.seen[before:])


def test_a_caller_that_goes_away_cancels_the_upstream_call(lane: Lane) -> None:
    with pytest.raises(httpx.ReadTimeout):
        lane.call("quitter", "GET", "/beta/slow", timeout=0.3)
    deadline = time.monotonic() + 5
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not records:
        records = lane.audit(actor="quitter")
        time.sleep(0.1)
    assert [(r["status"], r["reason"]) for r in records] == [(499, "client_disconnected")]


async def test_audit_count_equals_requests_after_a_burst(lane: Lane) -> None:
    n = 300
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=lane.gw.url, trust_env=False, limits=limits, timeout=60
    ) as c:
        hdrs = {"Authorization": f"Bearer {lane.tokens['burst']}"}
        paths = ["/beta/items/1", "/beta/nowhere", "/gamma/items/1"]
        rs = await asyncio.gather(*(c.get(paths[i % 3], headers=hdrs) for i in range(n)))
    assert sorted({r.status_code for r in rs}) == [200, 403, 404]
    deadline = time.monotonic() + 10
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = await asyncio.to_thread(lane.audit, actor="burst")
        if len(records) >= n:
            break
        await asyncio.sleep(0.1)
    assert len(records) == n
    assert {r["request_id"] for r in records} == {r.headers["x-vivified-request-id"] for r in rs}
    allowed = [r for r in records if r["decision"] == "allow"]
    assert len(allowed) == n // 3
    assert all(r["detail"]["route"] == "/api/items/{id}" for r in allowed)
    assert all("?" not in r["detail"].get("route", "") for r in records)


def test_both_framings_at_once_are_refused(lane: Lane) -> None:
    before = len(lane.up.seen)
    token = lane.tokens["alpha"]
    reply = raw_request(
        lane,
        f"POST /beta/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert len(lane.up.seen) == before


def _folded(name: str) -> str:
    return name.lower().replace("_", "-")


UNDERSCORE_SPOOFS = {
    "X_Vivified_Caller": "admin",
    "x_vivified_assertion": "forged",
    "X_Vivified_Request_Id": "forged-by-caller",
    "X_Forwarded_For": "6.6.6.6",
    "X_Forwarded_Host": "evil.example",
    "X_Real_IP": "6.6.6.6",
    "Proxy_Authorization": "Basic Zm9vOmJhcg==",
    "Keep_Alive": "timeout=5",
    "Connection": "keep-alive, X_Drop_Me",
    "X-Drop-Me": "1",
    "X_Kept_Too": "yes",
}


def test_underscore_spellings_of_stripped_headers_never_reach_the_target(lane: Lane) -> None:
    r = lane.call("alpha", "GET", "/beta/items/3", headers=UNDERSCORE_SPOOFS)
    assert r.status_code == 200, r.text
    received = r.json()["headers"]  # what the upstream itself read off the wire
    names = [k for k, _ in received]
    assert [n for n in names if "_" in n] == ["x_kept_too"]  # others with `_` pass untouched
    assert "x-drop-me" not in names
    by_folded: dict[str, list[str]] = {}
    for k, v in received:
        by_folded.setdefault(_folded(k), []).append(v)
    assert by_folded["x-vivified-caller"] == ["alpha"]
    assert by_folded["x-forwarded-for"] == ["127.0.0.1"]
    assert by_folded["x-forwarded-host"] != ["evil.example"]
    assert by_folded["x-vivified-request-id"] == [r.headers["x-vivified-request-id"]]
    assert len(by_folded["x-vivified-assertion"]) == 1
    assert "forged" not in by_folded["x-vivified-assertion"]
    for gone in ("x-real-ip", "proxy-authorization", "keep-alive"):
        assert gone not in by_folded, gone


class UnderscoreTarget:
    """An upstream that answers with underscore spellings of headers core strips."""

    def __init__(self) -> None:
        self.seen: list[list[tuple[str, str]]] = []

    async def item(self, request: Request) -> Response:
        self.seen.append([(k.decode(), v.decode()) for k, v in request.headers.raw])
        response = JSONResponse({"ok": True})
        for name, value in (
            ("X_Vivified_Request_Id", "forged-by-target"),
            ("Keep_Alive", "timeout=99"),
            ("Connection", "close, X_Secret_Too"),
            ("X-Secret-Too", "s"),
            ("X_Target_Note", "kept"),
        ):
            response.raw_headers.append((name.encode(), value.encode()))
        return response

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/items/{id}", self.item)])


def test_underscore_spellings_of_stripped_response_headers_never_reach_the_caller(
    lane: Lane,
) -> None:
    target = UnderscoreTarget()
    with (
        serve_in_thread(target.app()) as url,
        httpx.Client(base_url=lane.gw.url, timeout=30, trust_env=False) as c,
    ):
        for m in (
            simple("uscore-target", base_url=url, contracts=["UscorePlugin"]),
            simple("uscore-caller", dependencies=["uscore-target"], contracts=["UsePlugin"]),
        ):
            reg = register(c, m, registration_token(c))
            assert reg.status_code == 201, reg.text
            lane.tokens[m["id"]] = reg.json()["token"]
        r = lane.call(
            "uscore-caller", "GET", "/uscore-target/items/1", headers={"X_Vivified_Caller": "x"}
        )
    assert r.status_code == 200, r.text
    names = [k.decode("latin-1").lower() for k, _ in r.headers.raw]
    assert [n for n in names if "_" in n] == ["x_target_note"]
    assert "x-secret-too" not in names
    assert r.headers.get_list("x-vivified-request-id") != ["forged-by-target"]
    assert len(r.headers.get_list("x-vivified-request-id")) == 1
    assert len(target.seen) == 1  # and on the way in, the caller's spelling did not pass
    assert [v for k, v in target.seen[0] if _folded(k) == "x-vivified-caller"] == ["uscore-caller"]


async def _ws_headers(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json([[k.decode(), v.decode()] for k, v in ws.headers.raw])
    await ws.close()


def test_underscore_spellings_never_reach_a_websocket_target(lane: Lane) -> None:
    app = Starlette(routes=[WebSocketRoute("/api/feed", _ws_headers)])
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=lane.gw.url, timeout=30, trust_env=False) as c,
    ):
        for m in (
            simple("wsu-target", base_url=url, endpoints={"feed": "/api/feed"}),
            simple("wsu-caller", dependencies=["wsu-target"], contracts=["WsuPlugin"]),
        ):
            reg = register(c, m, registration_token(c))
            assert reg.status_code == 201, reg.text
            lane.tokens[m["id"]] = reg.json()["token"]
        spoofs = {
            k: v for k, v in UNDERSCORE_SPOOFS.items() if k not in {"Connection", "X-Drop-Me"}
        }
        with ws_connect(
            "ws" + lane.gw.url[4:] + "/wsu-target/feed",
            additional_headers={
                "Authorization": f"Bearer {lane.tokens['wsu-caller']}",
                "Sec_WebSocket_Protocol": "forged",
                **spoofs,
            },
        ) as ws:
            received = json.loads(ws.recv(timeout=10))
    names = [k for k, _ in received]
    assert [n for n in names if "_" in n] == ["x_kept_too"]
    folded = [_folded(n) for n in names]
    assert folded.count("x-vivified-caller") == 1
    assert dict(received)["x-vivified-caller"] == "wsu-caller"
    assert folded.count("x-forwarded-for") == 1
    assert folded.count("x-vivified-assertion") == 1
    assert "sec-websocket-protocol" not in folded
