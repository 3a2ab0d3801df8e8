"""Egress test helpers: real egress processes, real HTTP/HTTPS upstreams (trustme CA)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import trustme

from support.procs import CoreProcess
from support.registry_seed import SeedPlugin, seed_registry

UPSTREAM_NAMES = [
    "api.example.com",
    "files.example.org",
    "pass.example.org",
    "sub.example.org",
    "report.example.net",
]

# name -> address: names pointing at blocked ranges (127.0.0.1/32 is the only allowed network)
BLOCKED_OVERRIDES = {
    "loop2.example.com": ("127.0.0.2", "blocked_loopback"),
    "private10.example.com": ("10.1.2.3", "blocked_private"),
    "private172.example.com": ("172.16.0.1", "blocked_private"),
    "private192.example.com": ("192.168.1.1", "blocked_private"),
    "meta.example.com": ("169.254.169.254", "blocked_metadata"),
    "linklocal.example.com": ("169.254.10.10", "blocked_link_local"),
    "cgnat.example.com": ("100.64.0.1", "blocked_cgnat"),
    "bench.example.com": ("198.18.0.1", "blocked_benchmark"),
    "reserved.example.com": ("240.0.0.1", "blocked_reserved"),
    "multicast.example.com": ("224.0.0.1", "blocked_multicast"),
    "zero.example.com": ("0.0.0.0", "blocked_unspecified"),
    "bcast.example.com": ("255.255.255.255", "blocked_broadcast"),
    "v6loop.example.com": ("::1", "blocked_loopback"),
    "v6ula.example.com": ("fd00::1", "blocked_unique_local"),
    "v6ll.example.com": ("fe80::1", "blocked_link_local"),
    "v6mapped.example.com": ("::ffff:10.0.0.1", "blocked_private"),
    "nat64.example.com": ("64:ff9b::a00:1", "blocked_private"),
    "sixtofour.example.com": ("2002:a00:1::", "blocked_private"),
    "teredo.example.com": ("2001::1", "blocked_reserved"),
    "v6mcast.example.com": ("ff02::1", "blocked_multicast"),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/big":  # chunked, size unknown up front
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < n:
                chunk = b"x" * min(1000, n - sent)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/slow":  # answers after `s` seconds
            time.sleep(float(q.get("s", "0")))
            self._send(200, b"late")
            return
        if url.path == "/sized":
            self._send(200, b"y" * int(q.get("n", "0")), {"Content-Type": "text/plain"})
            return
        if url.path == "/type":
            self._send(200, b"data", {"Content-Type": q.get("ct", "text/plain")})
            return
        if url.path == "/cookie":
            self._send(
                200,
                b"{}",
                {
                    "Content-Type": "application/json",
                    "Set-Cookie": "session=abc",
                    "X-Vivified-Caller": "forged",
                },
            )
            return
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self._send(200, body)


@dataclass
class Upstreams:
    http_port: int
    https_port: int
    ca_file: Path
    servers: list[ThreadingHTTPServer] = field(default_factory=list)


@pytest.fixture(scope="session")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    ca = trustme.CA()
    cert = ca.issue_cert(*UPSTREAM_NAMES)
    d = tmp_path_factory.mktemp("upstream")
    ca_file = d / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    plain = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    secure = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    secure.socket = ctx.wrap_socket(secure.socket, server_side=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (plain, secure)]
    for t in threads:
        t.start()
    yield Upstreams(plain.server_address[1], secure.server_address[1], ca_file, [plain, secure])
    for s in (plain, secure):
        s.shutdown()
        s.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def egress_document(up: Upstreams, gateway_port: int, **changes: Any) -> dict[str, Any]:
    overrides = {name: "127.0.0.1" for name in UPSTREAM_NAMES}
    overrides["core.example.com"] = "127.0.0.1"
    overrides.update({name: addr for name, (addr, _) in BLOCKED_OVERRIDES.items()})
    doc: dict[str, Any] = {
        "enabled": True,
        "blocked_domains": ["blocked.example.com"],
        "allowed_networks": ["127.0.0.1/32"],
        "host_overrides": overrides,
        "allowed_ports": [80, 443, up.http_port, up.https_port, gateway_port],
        "passthrough_domains": ["pass.example.org"],
        "response_filters": {
            "default": {"max_body_bytes": 1_000_000},
            "domains": {
                "files.example.org": {
                    "max_body_bytes": 1000,
                    "allowed_content_types": ["application/json", "text/*"],
                }
            },
        },
    }
    doc.update(changes)
    return doc


def _plugin(pid: str, domains: list[str], mode: str = "enforce", **kw: Any) -> SeedPlugin:
    """A plugin of the rig: `phi=True` makes it a PHI handler, else an external service."""
    phi = kw.pop("phi", False)
    manifest = {
        "traits": ["handles_phi"] if phi else ["external_service"],
        "security": {"data_classification": ["phi"] if phi else ["internal"]},
    }
    return SeedPlugin(pid, domains, mode, manifest=manifest, **kw)


PLUGINS: dict[str, SeedPlugin] = {
    p.id: p
    for p in (
        _plugin("alpha", ["api.example.com", "*.example.com", "*.example.org"]),
        _plugin("beta", ["api.example.com"], "report"),
        _plugin("gamma", ["api.example.com"], status="disabled"),
        _plugin("phi-plug", ["api.example.com"], phi=True),
    )
}


def _registry(data_dir: Path, database_url: str | None) -> str:
    """The async URL of the registry the egress reads: `database_url`, else its SQLite file."""
    if database_url is not None:
        from support.backends import async_url

        return async_url(database_url)
    return f"sqlite+aiosqlite:///{data_dir.resolve() / 'registry.db'}"


async def _setup_db(
    data_dir: Path, doc: dict[str, Any], database_url: str | None = None
) -> dict[str, str]:
    return await seed_registry(_registry(data_dir, database_url), doc, list(PLUGINS.values()))


async def _update(
    data_dir: Path,
    *,
    doc: dict[str, Any] | None = None,
    plugin: tuple[str, dict[str, Any]] | None = None,
    database_url: str | None = None,
) -> None:
    from vivified.registry.store.engine import create_engine, session_factory
    from vivified.registry.store.tables import ConfigDocument, Plugin

    engine = create_engine(_registry(data_dir, database_url))
    try:
        async with session_factory(engine)() as s:
            if doc is not None:
                row = await s.get(ConfigDocument, "egress")
                assert row is not None
                row.document, row.version, row.updated_at = doc, row.version + 1, time.time()
            if plugin is not None:
                prow = await s.get(Plugin, plugin[0])
                assert prow is not None
                for k, v in plugin[1].items():
                    setattr(prow, k, v)
            await s.commit()
    finally:
        await engine.dispose()


async def _audit_rows(data_dir: Path, database_url: str | None = None) -> list[Any]:
    from sqlmodel import select

    from vivified.registry.store.engine import create_engine, session_factory
    from vivified.registry.store.tables import AuditRecord

    engine = create_engine(_registry(data_dir, database_url))
    try:
        async with session_factory(engine)() as s:
            rows = (
                (
                    await s.execute(
                        select(AuditRecord)
                        .where(AuditRecord.lane == "egress")
                        .order_by(AuditRecord.id)
                    )
                )
                .scalars()
                .all()
            )
            return list(rows)
    finally:
        await engine.dispose()


@dataclass
class Egress:
    proc: CoreProcess
    data_dir: Path
    up: Upstreams
    tokens: dict[str, str]
    ca_file: Path
    gateway_port: int
    database_url: str | None = None  # None: the SQLite file in data_dir

    @property
    def port(self) -> int:
        return self.proc.port

    def proxy_url(self, plugin: str = "alpha", token: str | None = None) -> str:
        tok = self.tokens[plugin] if token is None else token
        return f"http://{plugin}:{quote(tok, safe='')}@127.0.0.1:{self.port}"

    def auth_header(self, plugin: str = "alpha") -> str:
        return basic(plugin, self.tokens[plugin])

    def bearer_header(self, plugin: str = "alpha") -> str:
        return f"Bearer {self.tokens[plugin]}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def update(self, **kwargs: Any) -> None:
        asyncio.run(_update(self.data_dir, database_url=self.database_url, **kwargs))

    def audit_rows(self) -> list[Any]:
        return asyncio.run(_audit_rows(self.data_dir, self.database_url))


def start_egress(
    data_dir: Path,
    up: Upstreams,
    *,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
    **doc_changes: Any,
) -> Egress:
    """A real `vivified egress` on loopback; `env` adds or overrides VIVIFIED_* settings;
    `database_url` (postgresql://...) puts its registry there instead of the SQLite file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    gateway_port = free_port()
    document = egress_document(up, gateway_port, **doc_changes)
    tokens = asyncio.run(_setup_db(data_dir, document, database_url))
    if database_url is not None:
        env = {"VIVIFIED_DATABASE_URL": database_url, **(env or {})}
    proc = CoreProcess(
        "egress",
        data_dir,
        env={
            "VIVIFIED_EGRESS_UPSTREAM_CA": str(up.ca_file),
            "VIVIFIED_GATEWAY_PORT": str(gateway_port),
            "VIVIFIED_SNAPSHOT_RELOAD_INTERVAL": "0.5",
            "VIVIFIED_UPSTREAM_TIMEOUT": "3",
            "VIVIFIED_EGRESS_TUNNEL_MAX_SECONDS": "2",
            **(env or {}),
        },
    ).start()
    from vivified.config.egress_ca import ensure_ca

    return Egress(proc, data_dir, up, tokens, ensure_ca(data_dir), gateway_port, database_url)


@pytest.fixture(scope="module")
def egress(tmp_path_factory: pytest.TempPathFactory, upstreams: Upstreams) -> Iterator[Egress]:
    eg = start_egress(Path(tmp_path_factory.mktemp("egress")), upstreams)
    yield eg
    eg.proc.stop()


@pytest.fixture
def fresh_egress(tmp_path: Path, upstreams: Upstreams) -> Iterator[Egress]:
    eg = start_egress(tmp_path / "data", upstreams)
    yield eg
    eg.proc.stop()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def basic(user: str, token: str) -> str:
    """The `Proxy-Authorization` value of a proxy URL's `user:token` (RFC 7617 Basic)."""
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def raw_exchange(
    port: int, request: bytes, *, timeout: float = 10
) -> tuple[int, dict[str, str], bytes, socket.socket]:
    """Send one raw request to the proxy; return status, headers, body and the open socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(request)
    status, headers, body = read_response(sock)
    return status, headers, body, sock


def read_response(sock: socket.socket | ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def connect(
    eg: Egress, target: str, *, plugin: str | None = "alpha", auth: str | None = None
) -> tuple[int, dict[str, str], bytes, socket.socket]:
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if auth is not None:
        lines.append(f"Proxy-Authorization: {auth}")
    elif plugin is not None:
        lines.append(f"Proxy-Authorization: {eg.auth_header(plugin)}")
    return raw_exchange(eg.port, ("\r\n".join(lines) + "\r\n\r\n").encode())


@dataclass
class RawAnswer:
    """Everything a proxy sent on one connection, read until it closed (or `timeout`)."""

    first_read: bytes  # what one recv() returned once the first byte arrived
    data: bytes  # everything, until EOF
    closed: bool  # the proxy closed the connection within the timeout

    @property
    def status_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def headers(self) -> dict[str, str]:
        head = self.data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head)}

    @property
    def body(self) -> bytes:
        return self.data.partition(b"\r\n\r\n")[2]


def read_until_eof(sock: socket.socket, timeout: float = 3.0) -> RawAnswer:
    """Read one connection to its end: the first recv() alone, then the rest until EOF."""
    sock.settimeout(timeout)
    first = sock.recv(65536)
    data, closed = first, not first
    deadline = time.monotonic() + timeout
    while not closed and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            closed = True
        data += chunk
    sock.close()
    return RawAnswer(first, data, closed)


def raw_connect(eg: Egress, target: str, auth: str | None) -> RawAnswer:
    """A CONNECT with `auth` as Proxy-Authorization (None: no header), read until EOF."""
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if auth is not None:
        lines.append(f"Proxy-Authorization: {auth}")
    sock = socket.create_connection(("127.0.0.1", eg.port), timeout=10)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return read_until_eof(sock)


def get_inside(tls: ssl.SSLSocket, up: Upstreams, path: str = "/") -> int:
    """One keep-alive request inside the tunnel; its status."""
    host = f"api.example.com:{up.https_port}"
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status, _headers, _body = read_response(tls)
    return status


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other end closed `sock` (a read returns EOF or fails). A glance of 50 ms:
    the socket's own timeout is put back, so the next exchange on it is not held to it."""
    timeout = sock.gettimeout()
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except (OSError, ssl.SSLError):
        return True
    finally:
        sock.settimeout(timeout)
