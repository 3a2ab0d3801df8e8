"""PluginAuth at hook level: missing, malformed, bad and valid proxy credentials."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from vivified.egress.audit import OpenRecord
from vivified.egress.flow_state import DENIED, PLUGIN, TUNNEL, outcome
from vivified.egress.live_state import AuditTrail
from vivified.egress.proxy_auth import PluginAuth
from vivified.egress.records import Outcome

# (credentials: None = no header, "<alpha>" = alpha's real token) -> reason code
CASES = [
    pytest.param(None, "missing_credentials", "", id="missing"),
    pytest.param("Digest abc", "malformed_credentials", "", id="not-basic-or-bearer"),
    pytest.param("Bearer", "malformed_credentials", "", id="bearer-empty"),
    pytest.param("Bearer abc", "malformed_token", "", id="bearer-not-a-token"),
    pytest.param("bearer:<alpha-old>", "revoked", "", id="bearer-old-generation"),
    pytest.param("Basic !!!", "malformed_credentials", "", id="bad-base64"),
    pytest.param("basic:alpha:", "malformed_credentials", "", id="empty-token"),
    pytest.param("basic:alpha:not-a-token", "malformed_token", "claimed:alpha", id="bad-token"),
    pytest.param(
        "basic:beta:<alpha>", "credential_mismatch", "claimed:beta", id="other-plugins-token"
    ),
    pytest.param("basic:alpha:<alpha-old>", "revoked", "claimed:alpha", id="old-generation"),
]


def credentials(kit, tokens, spec: str | None) -> str | None:
    if spec is not None and spec.startswith("bearer:"):
        gen = 0 if spec == "bearer:<alpha-old>" else 1
        return "Bearer " + tokens.issue_plugin_token("alpha", gen).token
    if spec is None or not spec.startswith("basic:"):
        return spec
    _, user, token = spec.split(":", 2)
    if token == "<alpha>":
        token = tokens.issue_plugin_token("alpha", 1).token
    elif token == "<alpha-old>":
        token = tokens.issue_plugin_token("alpha", 0).token
    return kit.basic(user, token)


@pytest.mark.parametrize(("spec", "reason", "actor"), CASES)
async def test_connect_with_bad_credentials_is_407(
    kit, tokens, authenticator, spec: str | None, reason: str, actor: str
) -> None:
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    flow = kit.connect_flow("api.example.com:443", credentials(kit, tokens, spec))
    await chain.fire("http_connect", flow)
    assert flow.response is not None
    assert kit.refusal(flow) == (407, reason, reason)
    assert flow.response.headers["proxy-authenticate"] == 'Basic realm="vivified-egress"'
    assert flow.metadata[DENIED] is True
    assert PLUGIN not in flow.metadata
    o = outcome(flow)
    assert o is not None
    assert (o.actor, o.decision, o.reason, o.status) == (actor, "deny", reason, 407)
    assert "proxy-authorization" not in flow.request.headers


@pytest.mark.parametrize(("spec", "reason", "actor"), CASES)
async def test_plain_request_with_bad_credentials_is_407(
    kit, tokens, authenticator, spec: str | None, reason: str, actor: str
) -> None:
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    flow = kit.plain_flow("http://api.example.com/x", credentials(kit, tokens, spec))
    await chain.fire("requestheaders", flow)
    assert kit.refusal(flow) == (407, reason, reason)
    assert outcome(flow).actor == actor
    assert "proxy-authorization" not in flow.request.headers


async def test_valid_credentials_tag_the_plugin_and_never_travel_upstream(
    kit, tokens, authenticator
) -> None:
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    auth = kit.basic("alpha", tokens.issue_plugin_token("alpha", 1).token)
    connect = kit.connect_flow("api.example.com:443", auth)
    plain = kit.plain_flow("http://api.example.com/x", auth)
    await chain.fire("http_connect", connect)
    await chain.fire("requestheaders", plain)
    for flow in (connect, plain):
        assert flow.response is None
        assert DENIED not in flow.metadata
        assert flow.metadata[PLUGIN] == "alpha"
        assert outcome(flow).actor == "alpha"
        assert "proxy-authorization" not in flow.request.headers
    assert "proxy-connection" not in plain.request.headers


BEHIND = [
    pytest.param("delta", 1, "unknown_plugin", id="registered-elsewhere"),
    pytest.param("alpha", 2, "revoked", id="token-refreshed-elsewhere"),
]


@pytest.mark.parametrize(("pid", "gen", "stale_reason"), BEHIND)
async def test_a_token_newer_than_the_snapshot_is_confirmed_with_the_registry(
    kit, tokens, authenticator, pid: str, gen: int, stale_reason: str
) -> None:
    """A plugin registered, or given a new token, through another process a moment ago: this
    process's snapshot does not know it yet, the registry does."""
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    auth = kit.basic(pid, tokens.issue_plugin_token(pid, gen).token)
    refused = kit.connect_flow("api.example.com:443", auth)
    await chain.fire("http_connect", refused)  # the registry agrees with the snapshot
    assert kit.refusal(refused) == (407, stale_reason, stale_reason)
    assert kit.holder.confirms == 1
    snap = kit.holder.current
    view = replace(snap.plugins["alpha"], id=pid, gen=gen)
    kit.holder.ahead = replace(snap, plugins={**snap.plugins, pid: view})
    flow = kit.connect_flow("api.example.com:443", auth)
    await chain.fire("http_connect", flow)
    assert flow.response is None, kit.refusal(flow)
    assert flow.metadata[PLUGIN] == pid
    assert kit.holder.confirms == 2


async def test_a_token_the_snapshot_accepts_never_asks_the_registry(
    kit, tokens, authenticator
) -> None:
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    auth = kit.basic("alpha", tokens.issue_plugin_token("alpha", 1).token)
    for _ in range(2):  # verified, then from the cache
        flow = kit.connect_flow("api.example.com:443", auth)
        await chain.fire("http_connect", flow)
        assert flow.metadata[PLUGIN] == "alpha"
    bad = kit.connect_flow("api.example.com:443", kit.basic("alpha", "not-a-token"))
    await chain.fire("http_connect", bad)
    assert kit.refusal(bad) == (407, "malformed_token", "malformed_token")
    assert kit.holder.confirms == 0  # only what a snapshot behind could say is confirmed


async def test_request_inside_an_accepted_tunnel_needs_no_credentials(kit, authenticator) -> None:
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    flow = kit.plain_flow("http://api.example.com/x", auth="Basic !!!")
    flow.metadata[TUNNEL] = kit.target()
    await chain.fire("requestheaders", flow)
    assert flow.response is None
    assert PLUGIN not in flow.metadata  # the tunnel's plugin acts (see test_tunnels)
    assert "proxy-authorization" not in flow.request.headers


async def test_token_is_never_in_the_refusal(kit, tokens, authenticator) -> None:
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    token = tokens.issue_plugin_token("alpha", 1).token
    flow = kit.connect_flow("api.example.com:443", kit.basic("beta", token))
    await chain.fire("http_connect", flow)
    assert flow.response is not None
    assert token not in json.dumps(dict(flow.response.headers)) + flow.response.text
    assert token not in repr(outcome(flow))


async def test_bearer_credentials_name_the_plugin_from_the_verified_token(
    kit, tokens, authenticator
) -> None:
    # Java's HttpClient sends no Basic on CONNECT, but sends a Bearer header the plugin sets.
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator))
    auth = credentials(kit, tokens, "bearer:<alpha>")
    connect = kit.connect_flow("api.example.com:443", auth)
    plain = kit.plain_flow("http://api.example.com/x", auth)
    await chain.fire("http_connect", connect)
    await chain.fire("requestheaders", plain)
    for flow in (connect, plain):
        assert flow.response is None
        assert flow.metadata[PLUGIN] == "alpha"
        assert outcome(flow).actor == "alpha"
        assert "proxy-authorization" not in flow.request.headers


class SlowSink:
    """An audit writer whose queue is full until `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.events: list[Any] = []

    def record_nowait(self, event: Any) -> bool:
        return False

    async def record(self, event: Any) -> None:
        await self.release.wait()
        self.events.append(event)


async def test_new_work_waits_while_the_audit_backlog_is_full(kit, tokens, authenticator) -> None:
    sink = SlowSink()
    trail = AuditTrail(sink, limit=1)
    trail.record(Outcome("request", "alpha", "api.example.com", 80))
    assert trail.saturated
    chain = kit.chain(OpenRecord(), PluginAuth(authenticator, trail))
    flow = kit.plain_flow(
        "http://api.example.com/x", kit.basic("alpha", tokens.issue_plugin_token("alpha", 1).token)
    )
    waiting = asyncio.create_task(chain.fire("requestheaders", flow))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()
    assert PLUGIN not in flow.metadata
    sink.release.set()
    await asyncio.wait_for(waiting, 5)
    assert flow.metadata[PLUGIN] == "alpha"
    assert not trail.saturated
    assert len(sink.events) == 1
