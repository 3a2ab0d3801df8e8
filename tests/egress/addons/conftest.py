"""Hook-level fixtures for the egress addons: mitmproxy's `taddons` context and `tflow` flows,
a real snapshot (plugins, allowlists, egress settings), real tokens on a SQLite key store,
and a collector in place of the audit writer (same interface; the process-level tests in
tests/egress/ cover the real writer).

Hooks are fired the way mitmproxy's addon manager does, addon after addon in chain order, but
without its `safecall` (which would log an addon's exception instead of failing the test).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import hooks, http
from support.egress import basic

with warnings.catch_warnings():
    # mitmproxy.addons imports ldap3 (for its own proxyauth), which uses a pyasn1 name that
    # pyasn1 now deprecates; not our code, and only on this import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from mitmproxy.test import taddons, tflow, tutils

from vivified.egress.auth import ProxyAuthenticator
from vivified.egress.flow_state import OUTCOME, PLUGIN, Target
from vivified.egress.live_state import AuditTrail, EgressState
from vivified.egress.records import Outcome
from vivified.policy.decision import Decision
from vivified.policy.egress_settings import parse_egress_document
from vivified.registry.audit.writer import AuditEvent
from vivified.registry.identity.tokens import TokenService
from vivified.registry.store.snapshot import PluginView, Snapshot

EGRESS_DOC: dict[str, Any] = {
    "blocked_domains": ["blocked.example.com"],
    "allowed_networks": ["127.0.0.1/32"],
    "host_overrides": {
        "api.example.com": "127.0.0.1",
        "files.example.org": "127.0.0.1",
        "pass.example.org": "127.0.0.1",
        "private.example.org": "10.1.2.3",
        "core.example.org": "127.0.0.1",
    },
    "allowed_ports": [80, 443, 8081],
    "passthrough_domains": ["pass.example.org"],
    "response_filters": {
        "default": {"max_body_bytes": 1000},
        "domains": {"files.example.org": {"allowed_content_types": ["text/plain", "text/csv"]}},
    },
}
ALLOWLIST = ("api.example.com", "*.example.org")


def plugin(pid: str, **changes: Any) -> PluginView:
    base: dict[str, Any] = {
        "id": pid,
        "status": "active",
        "gen": 1,
        "base_url": f"http://{pid}.local",
        "manifest": {"id": pid},
        "traits": frozenset({"external_service"}),
        "classification": frozenset({"internal"}),
        "contracts": (),
        "dependencies": frozenset(),
        "endpoints": {},
        "egress_domains": ALLOWLIST,
        "egress_mode": "enforce",
    }
    base.update(changes)
    return PluginView(**base)


def snapshot(**egress_changes: Any) -> Snapshot:
    plugins = {
        "alpha": plugin("alpha"),
        "beta": plugin("beta", egress_mode="report", egress_domains=("api.example.com",)),
        "gamma": plugin("gamma", status="disabled"),
        "phi-plug": plugin(
            "phi-plug",
            classification=frozenset({"phi"}),
            traits=frozenset({"handles_phi"}),
        ),
    }
    doc = {**EGRESS_DOC, **egress_changes}
    return Snapshot(plugins=plugins, egress=parse_egress_document(doc))


class Holder:
    """What `SnapshotHolder` offers the proxy: the current snapshot (swapped by a test)."""

    def __init__(self, current: Snapshot) -> None:
        self.current = current
        self.ahead: Snapshot | None = None  # what the registry holds that no notice brought yet
        self.confirms = 0

    async def confirm(self) -> Snapshot:
        """`SnapshotHolder.confirm`: the registry's newer picture (`ahead`) becomes current."""
        self.confirms += 1
        if self.ahead is not None:
            self.current, self.ahead = self.ahead, None
        return self.current


@dataclass
class Collector:
    """The `AuditWriter` interface, collecting events in memory."""

    events: list[AuditEvent] = field(default_factory=list)

    def record_nowait(self, event: AuditEvent) -> bool:
        self.events.append(event)
        return True

    async def record(self, event: AuditEvent) -> None:
        self.events.append(event)


@dataclass
class Closer:
    """`LiveConnections.close_client`, remembering whom it closed."""

    closed: list[tuple[str, bool]] = field(default_factory=list)

    def __call__(self, client: Any, abort: bool = False) -> None:
        self.closed.append((client.id, abort))


class Chain:
    """Our addons registered with a `taddons` master; `fire` runs one hook through them."""

    def __init__(self, tctx: taddons.context, addons: tuple[Any, ...]) -> None:
        self.addons = addons
        self.manager = tctx.master.addons
        self.manager.add(*addons)

    async def fire(self, name: str, *args: Any) -> None:
        hook = hooks.all_hooks[name](*args)
        for addon in self.addons:
            await self.manager.invoke_addon(addon, hook)


def connect_flow(authority: str, auth: str | None = None) -> http.HTTPFlow:
    """A CONNECT as mitmproxy parses it (authority form), with `Proxy-Authorization`."""
    host, _, port = authority.rpartition(":")
    headers = http.Headers() if auth is None else http.Headers(proxy_authorization=auth)
    req = tutils.treq(
        method=b"CONNECT",
        scheme=b"",
        host=host,
        port=int(port),
        authority=authority.encode(),
        path=b"",
        headers=headers,
        content=b"",
    )
    return tflow.tflow(req=req)


def plain_flow(
    url: str, auth: str | None = None, host_header: str | None = "", **headers: str
) -> http.HTTPFlow:
    """A proxy request in absolute form (`host_header=""`: the URL's authority, None: none)."""
    req = http.Request.make("GET", url)
    req.headers.clear()
    if host_header == "":
        default = 443 if req.scheme == "https" else 80
        host_header = req.host if req.port == default else f"{req.host}:{req.port}"
    if host_header is not None:
        req.headers["Host"] = host_header
    if auth is not None:
        req.headers["Proxy-Authorization"] = auth
    req.headers["Proxy-Connection"] = "keep-alive"
    for key, value in headers.items():
        req.headers[key.replace("_", "-")] = value
    return tflow.tflow(req=req)


def tag(flow: http.HTTPFlow, plugin_id: str | None = None) -> Outcome:
    """What the addons before the one under test leave: an opened record, the plugin."""
    o = Outcome("request", "", flow.request.host, flow.request.port, request_id=flow.id)
    flow.metadata[OUTCOME] = o
    if plugin_id is not None:
        flow.metadata[PLUGIN] = plugin_id
    return o


def target(host: str = "api.example.com", port: int = 443, **changes: Any) -> Target:
    base: dict[str, Any] = {
        "plugin_id": "alpha",
        "host": host,
        "port": port,
        "address": "127.0.0.1",
        "decision": Decision.allow("allowed"),
        "mode": "enforce",
        "passthrough": False,
    }
    base.update(changes)
    return Target(**base)


def refusal(flow: http.HTTPFlow) -> tuple[int, str, str]:
    """(status, X-Vivified-Egress-Error, body reason) of the proxy's own answer."""
    assert flow.response is not None
    body = json.loads(flow.response.get_content() or b"{}")
    assert body.get("detail"), body
    return (
        flow.response.status_code,
        flow.response.headers.get("x-vivified-egress-error", ""),
        body.get("reason", ""),
    )


class Kit:
    """Everything a hook test needs, as one fixture (the helpers above as attributes)."""

    connect_flow = staticmethod(connect_flow)
    plain_flow = staticmethod(plain_flow)
    basic = staticmethod(basic)
    tag = staticmethod(tag)
    target = staticmethod(target)
    refusal = staticmethod(refusal)
    snapshot = staticmethod(snapshot)

    def __init__(self, tctx: taddons.context, holder: Holder, audit: Collector) -> None:
        self.tctx = tctx
        self.holder = holder
        self.audit = audit
        self.state = EgressState(holder, AuditTrail(audit))
        self.close = Closer()

    def chain(self, *addons: Any) -> Chain:
        return Chain(self.tctx, addons)


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    """A taddons context in the running loop, a real snapshot and an audit collector."""
    holder = Holder(snapshot())
    audit = Collector()
    with taddons.context() as tctx:
        yield Kit(tctx, holder, audit)


@pytest.fixture
async def tokens(tmp_path: Path) -> AsyncIterator[TokenService]:
    """Core's real token service on a fresh SQLite key store."""
    from vivified.registry.identity.keys import KeyStore
    from vivified.registry.store.engine import create_engine, migrate, session_factory

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}")
    await migrate(engine)
    keys = KeyStore(session_factory(engine))
    await keys.load(create=True)
    try:
        yield TokenService(keys, issuer="vivified-core", ttl=600)
    finally:
        await engine.dispose()


@pytest.fixture
def authenticator(kit: Kit, tokens: TokenService) -> ProxyAuthenticator:
    return ProxyAuthenticator(tokens, kit.holder)
