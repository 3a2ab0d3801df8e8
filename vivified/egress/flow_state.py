"""What the egress addons tell each other about a flow, through `flow.metadata`.

The addons run in a fixed order (see `launcher.egress_addons`) and never share private state:
an earlier addon tags the flow, a later one reads the tag. Every key and its type is here.

- `OUTCOME`  the flow's audit record in the making (`audit.OpenRecord` opens it)
- `PLUGIN`   the authenticated plugin id (`proxy_auth.ProxyAuth`)
- `TUNNEL`   the target of the accepted CONNECT a request arrived in (`tunnels.Tunnels`)
- `VERDICT`  what policy allowed: plugin, decision, allowlist mode (`egress_policy.EgressPolicy`)
- `TARGET`   the authorised destination, address included (`pinning.AddressPinning`, or the
             tunnel's for a request inside one)
- `DENIED`   the proxy answered the flow itself (`responses.refuse`); later addons leave it be
- `AUDITED`  the record was written (`live_state.AuditTrail`); it is written once
- `TIMED_OUT` the 504 stands in for the upstream's missing answer (`response_deadline`)
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import http

from vivified.egress.records import Outcome
from vivified.policy.decision import Decision

__all__ = [
    "AUDITED",
    "DENIED",
    "OUTCOME",
    "PLUGIN",
    "TARGET",
    "TIMED_OUT",
    "TUNNEL",
    "VERDICT",
    "Target",
    "Verdict",
    "is_settled",
    "outcome",
    "plugin_id",
    "target",
    "tunnel",
    "verdict",
]

OUTCOME = "vivified.outcome"
PLUGIN = "vivified.plugin"
TUNNEL = "vivified.tunnel"
VERDICT = "vivified.verdict"
TARGET = "vivified.target"
DENIED = "vivified.denied"
AUDITED = "vivified.audited"
TIMED_OUT = "vivified.timed_out"


@dataclass(frozen=True)
class Verdict:
    """Policy let the flow through: for whom, on which decision (allowed or report), in which
    allowlist mode."""

    plugin_id: str
    decision: Decision
    mode: str


@dataclass
class Target:
    """An authorised destination: the normalised name and the one address it may reach."""

    plugin_id: str
    host: str
    port: int
    address: str
    decision: Decision
    mode: str
    passthrough: bool


def outcome(flow: http.HTTPFlow) -> Outcome | None:
    """The flow's audit record, if one was opened (every flow through `OpenRecord` has one)."""
    value: Outcome | None = flow.metadata.get(OUTCOME)
    return value


def plugin_id(flow: http.HTTPFlow) -> str | None:
    """The plugin the proxy credentials proved (not set inside a tunnel: see `tunnel`)."""
    value: str | None = flow.metadata.get(PLUGIN)
    return value


def tunnel(flow: http.HTTPFlow) -> Target | None:
    """For a request inside an accepted CONNECT tunnel: that tunnel's target."""
    value: Target | None = flow.metadata.get(TUNNEL)
    return value


def verdict(flow: http.HTTPFlow) -> Verdict | None:
    """What policy allowed (CONNECT and plain requests; not set for refused flows)."""
    value: Verdict | None = flow.metadata.get(VERDICT)
    return value


def target(flow: http.HTTPFlow) -> Target | None:
    """The authorised destination of the flow, once every check passed."""
    value: Target | None = flow.metadata.get(TARGET)
    return value


def is_settled(flow: http.HTTPFlow) -> bool:
    """Whether the flow needs no more checks: refused by the proxy, or mitmproxy's own error
    (e.g. a request smuggling attempt) that the audit addon records as `bad_request`."""
    return bool(flow.metadata.get(DENIED)) or flow.error is not None
