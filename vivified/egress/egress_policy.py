"""The policy decision as a mitmproxy addon: may this plugin reach this host and port?

A thin adapter over `vivified.policy.egress.decide_egress`, asked with the current snapshot
(plugin status, effective allowlist and its mode, the egress settings): default deny, 403
with the policy's reason code. Report mode lets the flow through, audited as would-deny.

- CONNECT and plain requests: the plugin authenticated by `PluginAuth`, the requested host and
  port. Tags `flow.metadata[VERDICT]` for `AddressPinning`, which resolves and pins next. A
  refusal is confirmed against the registry's revision before it is answered.
- Requests inside a tunnel: the tunnel's plugin and target, asked again (a disable or an
  allowlist change applies to open tunnels). Tags `flow.metadata[TARGET]` = the tunnel's.
"""

from __future__ import annotations

from mitmproxy import http

from vivified.egress.flow_state import (
    TARGET,
    VERDICT,
    Verdict,
    is_settled,
    outcome,
    plugin_id,
    tunnel,
)
from vivified.egress.live_state import EgressState
from vivified.egress.memo import SnapshotMemo
from vivified.egress.responses import refuse
from vivified.policy.decision import Decision
from vivified.policy.egress import EgressRequest, audit_decision, audit_reason, decide_egress
from vivified.registry.store.snapshot import PluginView, Snapshot

Answer = tuple[Decision, PluginView | None]


def decide(snap: Snapshot, plugin: str, host: str, port: int) -> Answer:
    """The decision for `plugin` to reach `host:port` on `snap`, and the plugin as policy saw it."""
    view = snap.plugins.get(plugin)
    req = EgressRequest(
        plugin_id=plugin,
        plugin_status=None if view is None else view.status,
        allowlist=() if view is None else tuple(view.egress_domains),
        mode="enforce" if view is None else view.egress_mode,
        host=host,
        port=port,
        settings=snap.egress,
    )
    return decide_egress(req), view


class EgressPolicy:
    """A mitmproxy addon: allow, report or refuse (403) each CONNECT and request."""

    def __init__(self, state: EgressState) -> None:
        self._state = state
        self._answers: SnapshotMemo[Answer] = SnapshotMemo(state.snapshots)

    def decide(self, plugin: str, host: str, port: int) -> Answer:
        """The decision for `plugin` to reach `host:port` now, and the plugin as policy saw it
        (remembered for the current snapshot: the requests of a connection ask the same)."""
        return self._answers.get(
            (plugin, host, port), lambda snap: decide(snap, plugin, host, port)
        )

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if not is_settled(flow):
            await self._destination(flow)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if is_settled(flow):
            return
        t = tunnel(flow)
        if t is None:
            await self._destination(flow)
            return
        decision, _view = self.decide(t.plugin_id, t.host, t.port)
        if not decision.allowed:
            refuse(flow, decision.reason, decision.detail)
            return
        self._allowed(flow, decision)
        flow.metadata[TARGET] = t

    async def _destination(self, flow: http.HTTPFlow) -> None:
        """A CONNECT or plain request: the authenticated plugin (none: refused as unknown). A
        refusal is confirmed first: on a snapshot behind the registry (an admin enabled the
        plugin or widened its allowlist a moment ago, through another process) it is decided
        again on a fresh one (`vivified.registry.store.revision`)."""
        plugin = plugin_id(flow) or ""
        decision, view = self.decide(plugin, flow.request.host, flow.request.port)
        if not decision.allowed and plugin:
            snap = self._state.current
            if await self._state.confirm() is not snap:
                decision, view = self.decide(plugin, flow.request.host, flow.request.port)
        o = outcome(flow)
        if o is not None:
            o.mode = "" if view is None else view.egress_mode
        if not decision.allowed or view is None:
            refuse(flow, decision.reason, decision.detail)
            return
        self._allowed(flow, decision)
        flow.metadata[VERDICT] = Verdict(plugin, decision, view.egress_mode)

    def _allowed(self, flow: http.HTTPFlow, decision: Decision) -> None:
        o = outcome(flow)
        if o is not None:
            o.decision, o.reason = audit_decision(decision), audit_reason(decision)
