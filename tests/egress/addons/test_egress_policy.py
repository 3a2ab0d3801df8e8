"""EgressPolicy at hook level: allowed, reported and refused destinations (403 + reason)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vivified.egress.audit import OpenRecord
from vivified.egress.egress_policy import EgressPolicy
from vivified.egress.flow_state import DENIED, TARGET, VERDICT, outcome
from vivified.registry.store.snapshot import Snapshot

REFUSED = [
    pytest.param("alpha", "evil-example.com:443", "host_not_allowed", id="lookalike"),
    pytest.param("alpha", "example.org:443", "host_not_allowed", id="apex-of-wildcard"),
    pytest.param("alpha", "api.example.com:22", "port_not_allowed", id="ssh-port"),
    pytest.param("alpha", "blocked.example.com:443", "blocked_domain", id="blocklist"),
    pytest.param("alpha", "127.0.0.1:443", "ip_literal_not_allowed", id="ip-literal"),
    pytest.param("gamma", "api.example.com:443", "plugin_not_active", id="disabled-plugin"),
    pytest.param("nobody", "api.example.com:443", "plugin_not_active", id="unknown-plugin"),
    pytest.param(None, "api.example.com:443", "plugin_not_active", id="not-authenticated"),
    pytest.param("beta", "api.example.com:22", "port_not_allowed", id="report-keeps-ports"),
]


@pytest.mark.parametrize(("plugin", "authority", "reason"), REFUSED)
async def test_refused_connect_is_403_with_reason(
    kit, plugin: str | None, authority: str, reason: str
) -> None:
    chain = kit.chain(EgressPolicy(kit.state))
    flow = kit.connect_flow(authority)
    o = kit.tag(flow, plugin)
    await chain.fire("http_connect", flow)
    assert kit.refusal(flow) == (403, reason, reason)
    assert flow.metadata[DENIED] is True
    assert VERDICT not in flow.metadata
    assert (o.decision, o.reason, o.status) == ("deny", reason, 403)


@pytest.mark.parametrize(("plugin", "authority", "reason"), REFUSED)
async def test_refused_plain_request_is_403_with_reason(
    kit, plugin: str | None, authority: str, reason: str
) -> None:
    chain = kit.chain(EgressPolicy(kit.state))
    flow = kit.plain_flow(f"http://{authority}/")
    kit.tag(flow, plugin)
    await chain.fire("requestheaders", flow)
    assert kit.refusal(flow) == (403, reason, reason)


ALLOWED = [
    pytest.param("alpha", "api.example.com:443", "allow", "allowed", "enforce", id="exact"),
    pytest.param("alpha", "sub.example.org:443", "allow", "allowed", "enforce", id="wildcard"),
    pytest.param(
        "beta", "files.example.org:443", "report", "host_not_allowed", "report", id="report"
    ),
]


@pytest.mark.parametrize(("plugin", "authority", "decision", "reason", "mode"), ALLOWED)
async def test_allowed_connect_is_tagged_for_pinning(
    kit, plugin: str, authority: str, decision: str, reason: str, mode: str
) -> None:
    chain = kit.chain(EgressPolicy(kit.state))
    flow = kit.connect_flow(authority)
    o = kit.tag(flow, plugin)
    await chain.fire("http_connect", flow)
    assert flow.response is None
    verdict = flow.metadata[VERDICT]
    assert (verdict.plugin_id, verdict.mode) == (plugin, mode)
    assert (o.decision, o.reason, o.mode) == (decision, reason, mode)


async def test_request_in_tunnel_is_decided_again_on_the_current_snapshot(kit) -> None:
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state))
    first = kit.plain_flow("http://api.example.com/")
    first.metadata["vivified.tunnel"] = tunnel = kit.target()
    await chain.fire("requestheaders", first)
    assert first.response is None
    assert first.metadata[TARGET] is tunnel
    assert outcome(first).decision == "allow"
    kit.holder.current = kit.snapshot(enabled=False)  # the admin switched egress off
    second = kit.plain_flow("http://api.example.com/")
    second.metadata["vivified.tunnel"] = tunnel
    await chain.fire("requestheaders", second)
    assert kit.refusal(second) == (403, "egress_disabled", "egress_disabled")
    assert TARGET not in second.metadata


async def test_refused_or_errored_flows_are_left_alone(kit) -> None:
    chain = kit.chain(EgressPolicy(kit.state))
    flow = kit.connect_flow("evil-example.com:443")
    kit.tag(flow, "alpha")
    flow.metadata[DENIED] = True
    await chain.fire("http_connect", flow)
    assert flow.response is None


def widened(snap: Snapshot) -> Snapshot:
    """The registry a moment after `snap`: alpha may also reach evil-example.com, and gamma
    was enabled."""
    alpha, gamma = snap.plugins["alpha"], snap.plugins["gamma"]
    plugins = {
        **snap.plugins,
        "alpha": replace(alpha, egress_domains=(*alpha.egress_domains, "evil-example.com")),
        "gamma": replace(gamma, status="active"),
    }
    return replace(snap, plugins=plugins)


AHEAD = [
    pytest.param("alpha", "evil-example.com:443", id="allowlist-widened"),
    pytest.param("gamma", "api.example.com:443", id="plugin-enabled"),
]


@pytest.mark.parametrize(("plugin_id", "authority"), AHEAD)
@pytest.mark.parametrize("hook", ["http_connect", "requestheaders"])
async def test_a_refusal_on_a_snapshot_behind_the_registry_is_decided_again(
    kit, plugin_id: str, authority: str, hook: str
) -> None:
    chain = kit.chain(EgressPolicy(kit.state))
    kit.holder.ahead = widened(kit.holder.current)  # committed elsewhere; no change notice here yet
    flow = (
        kit.connect_flow(authority)
        if hook == "http_connect"
        else kit.plain_flow(f"http://{authority}/")
    )
    o = kit.tag(flow, plugin_id)
    await chain.fire(hook, flow)
    assert flow.response is None, kit.refusal(flow)
    assert (o.decision, o.reason) == ("allow", "allowed")
    assert kit.holder.confirms == 1


async def test_a_refusal_the_registry_agrees_with_stands(kit) -> None:
    chain = kit.chain(EgressPolicy(kit.state))
    flow = kit.connect_flow("evil-example.com:443")
    kit.tag(flow, "alpha")
    await chain.fire("http_connect", flow)
    assert kit.refusal(flow) == (403, "host_not_allowed", "host_not_allowed")
    assert kit.holder.confirms == 1  # one revision read, nothing reloaded


async def test_allowed_traffic_and_open_tunnels_never_ask_the_registry(kit) -> None:
    chain = kit.chain(OpenRecord(), EgressPolicy(kit.state))
    allowed = kit.connect_flow("api.example.com:443")
    kit.tag(allowed, "alpha")
    await chain.fire("http_connect", allowed)
    assert allowed.response is None
    kit.holder.current = kit.snapshot(enabled=False)  # the admin switched egress off
    inside = kit.plain_flow("http://api.example.com/")
    inside.metadata["vivified.tunnel"] = kit.target()
    await chain.fire("requestheaders", inside)
    assert kit.refusal(inside) == (403, "egress_disabled", "egress_disabled")
    assert kit.holder.confirms == 0  # a revocation is not confirmed: the notice carries it
